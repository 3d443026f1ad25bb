import json

import pytest

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.model.data import calibration_samples, eval_windows, hash_split, load_texts


def test_local_splits_are_disjoint_and_cover_everything(corpus):
    parts = {s: set(load_texts(corpus, s)) for s in ("calibration", "validation", "test")}
    assert parts["calibration"] and parts["validation"] and parts["test"]
    assert not (parts["calibration"] & parts["test"]) and not (parts["validation"] & parts["test"])
    total = open(corpus).read().split("\n\n")
    assert sum(len(p) for p in parts.values()) == len(set(total))


def test_hash_split_is_deterministic_and_roughly_10_10_80():
    counts = {"calibration": 0, "validation": 0, "test": 0}
    for i in range(5000):
        counts[hash_split(f"doc {i}")] += 1
    assert counts == {k: sum(hash_split(f"doc {i}") == k for i in range(5000)) for k in counts}
    assert 400 < counts["test"] < 600 and 400 < counts["validation"] < 600


def test_calibration_samples_are_seeded_crops(corpus, tokenizer):
    a = calibration_samples(tokenizer, CalibConfig(data=corpus, nsamples=6, seqlen=16, seed=3))
    b = calibration_samples(tokenizer, CalibConfig(data=corpus, nsamples=6, seqlen=16, seed=3))
    c = calibration_samples(tokenizer, CalibConfig(data=corpus, nsamples=6, seqlen=16, seed=4))
    assert a.shape == (6, 16) and (a == b).all() and not (a == c).all()


def test_eval_windows_follow_the_protocol(corpus, tokenizer):
    from gpsearch.model.data import token_stream

    stream = token_stream(tokenizer, corpus, "test")
    w = eval_windows(tokenizer, EvalConfig(data=corpus, split="test", seqlen=16))
    assert w.shape == (stream.numel() // 16, 16)
    assert (w.reshape(-1) == stream[: w.numel()]).all()
    w2 = eval_windows(tokenizer, EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3))
    assert (w2 == w[:3]).all()


def test_jsonl_and_bad_specs(tmp_path, tokenizer):
    f = tmp_path / "docs.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"w{i} w{i + 1} w2"}) for i in range(50)))
    assert sum(len(load_texts(str(f), s)) for s in ("calibration", "validation", "test")) == 50
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(UserError):
        load_texts(str(bad), "test")
    with pytest.raises(UserError, match="unknown data spec"):
        load_texts("no-such-corpus", "test")
    with pytest.raises(UserError):
        EvalConfig(split="train")


def test_unreachable_hub_dataset_is_a_one_line_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the hub\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    load_texts.cache_clear()
    with pytest.raises(UserError) as e:
        load_texts("wikitext2", "test")
    assert "\n" not in str(e.value) and "--data wiki" in str(e.value)
