"""CUDA paths of the evaluator on a tiny LLaMA: features, masks and perplexity on the GPU agree
with the CPU, in float32 and bfloat16. Skipped without CUDA; ``scripts/gpu_check.sh`` runs every
test marked ``cuda`` (``pytest -m cuda``)."""

from __future__ import annotations

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import EXTENDED, parse_prefix
from tests.conftest import loaded, make_llama

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _evaluator(device, dtype, tokenizer, corpus, tmp_path):
    model = make_llama().to(device=device, dtype=dtype)
    calib = CalibConfig(data=corpus, nsamples=8, seqlen=32, batch_size=4)
    return Evaluator(calib=calib, cache_dir=tmp_path / device, lm=loaded(model, tokenizer))


@pytest.mark.parametrize("expr", ["mul(W, sqrt(X))", "mul(abs(mul(W, W)), mms(G))", "mul(W, H)"])
def test_cuda_prune_matches_cpu_in_float32(expr, tokenizer, corpus, tmp_path):
    ev_cfg = EvalConfig(data=corpus, split="validation", seqlen=32, max_windows=4)
    tree, pattern = parse_prefix(expr, EXTENDED), parse_pattern("unstructured")
    out = {}
    for device in ("cpu", "cuda"):
        ev = _evaluator(device, torch.float32, tokenizer, corpus, tmp_path)
        rec = ev.evaluate(tree, 0.5, pattern, ev_cfg, keep=True)
        out[device] = (rec["ppl"], {n: (lin.weight == 0).cpu() for n, lin in ev.linears.items()})
        assert next(ev.model.parameters()).device.type == device
    (cpu_ppl, cpu_masks), (gpu_ppl, gpu_masks) = out["cpu"], out["cuda"]
    assert gpu_ppl == pytest.approx(cpu_ppl, rel=1e-3)
    for name, mask in cpu_masks.items():
        assert float((mask == gpu_masks[name]).float().mean()) > 0.99, name


def test_cuda_bfloat16_prunes_to_the_sparsity_with_a_finite_perplexity(tokenizer, corpus,
                                                                       tmp_path):
    ev = _evaluator("cuda", torch.bfloat16, tokenizer, corpus, tmp_path)
    ev_cfg = EvalConfig(data=corpus, split="validation", seqlen=32, max_windows=4)
    rec = ev.evaluate(parse_prefix("mul(W, sqrt(X))"), 0.5, parse_pattern("2:4", 0.5), ev_cfg)
    assert abs(rec["achieved_sparsity"] - 0.5) < 1e-6 and torch.isfinite(torch.tensor(rec["ppl"]))
    assert all(lin.weight.dtype == torch.bfloat16 for lin in ev.linears.values())
