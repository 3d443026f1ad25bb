"""compressed-tensors export: written by gpsearch, read back by the compressed-tensors package."""

import json

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.model.export import (
    check_save_format,
    load_compressed,
    save_compressed,
    sparsity_format,
    weights_bytes,
)
from gpsearch.model.save import save_pruned
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import parse_prefix


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_round_trip_identical_weights_and_perplexity(tiny_lm, corpus, tmp_path, pattern):
    ev = Evaluator(calib=CalibConfig(data=corpus, nsamples=4, seqlen=16), cache_dir=tmp_path,
                   lm=tiny_lm)
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=4)
    rec = ev.evaluate(parse_prefix("mul(W, sqrt(X))"), 0.5, parse_pattern(pattern, 0.5), evc,
                      keep=True)
    info = save_compressed(ev.lm, tmp_path / "ct", rec)
    assert info["compression_format"] == ("sparse-24-bitmask" if pattern == "2:4"
                                          else "sparse-bitmask")
    cfg = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors"
    assert cfg["sparsity_config"]["format"] == info["compression_format"]
    back = load_compressed(tmp_path / "ct")
    want = ev.model.state_dict()
    got = back.state_dict()
    assert set(want) == set(got)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert perplexity(back, ev.windows(evc))["ppl"] == pytest.approx(rec["ppl"], rel=1e-6)
    # the compressed file really is the compressed form, not a dense copy
    dense_dir = save_pruned(ev.lm, tmp_path / "hf", rec)
    assert weights_bytes(tmp_path / "ct") < weights_bytes(dense_dir)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ct" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert sum(k.endswith(".bitmask") for k in keys) == len(ev.linears)
    assert not any(k.endswith("q_proj.weight") for k in keys)
    stored = json.loads((tmp_path / "ct" / "gpsearch_record.json").read_text())
    assert stored["export"]["weights_bytes"] == weights_bytes(tmp_path / "ct")


def test_format_detection():
    from tests.conftest import make_llama

    model = make_llama()
    assert sparsity_format(model)[0] == "sparse-bitmask"  # dense: no 2:4 groups
    with torch.no_grad():
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and ".layers." in n:
                m.weight.view(-1, 4)[:, :2] = 0
    fmt, structure, s = sparsity_format(model)
    assert (fmt, structure) == ("sparse-24-bitmask", "2:4") and s == pytest.approx(0.5)


def test_unknown_format_is_a_user_error():
    with pytest.raises(UserError, match="save-format"):
        check_save_format("gguf")
