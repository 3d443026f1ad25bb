"""KL / perplexity fitness per window against independent computations."""

import math

import pytest
import torch

from gpsearch.fitness.perplexity import window_losses
from gpsearch.fitness.stages import score_of
from gpsearch.fitness.windows import (
    cached_reference,
    coarse_kl,
    dense_reference,
    topk_logprobs,
    window_scores,
)
from tests.conftest import make_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def full_kl(p_logits, q_logits):
    p = torch.softmax(p_logits.double(), -1)
    return (p * (torch.log_softmax(p_logits.double(), -1)
                 - torch.log_softmax(q_logits.double(), -1))).sum(-1)


def test_coarse_kl_is_the_exact_kl_with_the_whole_vocabulary():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(5, 7, 40, generator=g) * 3, torch.randn(5, 7, 40, generator=g) * 3
    vals, idx = topk_logprobs(p, 40)
    assert torch.allclose(coarse_kl(vals, idx, q), full_kl(p, q), atol=1e-5)


def test_coarse_kl_with_top_k_is_the_kl_of_the_coarsened_distributions():
    g = torch.Generator().manual_seed(1)
    p, q = torch.randn(3, 50, generator=g) * 2, torch.randn(3, 50, generator=g) * 2
    k = 8
    vals, idx = topk_logprobs(p, k)
    got = coarse_kl(vals, idx, q)
    for r in range(3):  # independent: K bins + one tail bin, probabilities summed by hand
        pp, qq = torch.softmax(p[r].double(), -1), torch.softmax(q[r].double(), -1)
        top = set(idx[r].tolist())
        ps = ([pp[i].item() for i in sorted(top)]
              + [sum(pp[i].item() for i in range(50) if i not in top)])
        qs = ([qq[i].item() for i in sorted(top)]
              + [sum(qq[i].item() for i in range(50) if i not in top)])
        want = sum(a * math.log(a / b) for a, b in zip(ps, qs))
        assert got[r].item() == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert got[r].item() <= full_kl(p[r], q[r]).item() + 1e-6


def test_window_scores_nll_matches_perplexity_and_kl_to_itself_is_zero(tmp_path):
    model = make_llama()
    windows = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(0))
    ref = dense_reference(model, windows, k=16, batch_size=4)
    out = window_scores(model, windows, 4, ref)
    assert out["nll"] == pytest.approx(window_losses(model, windows, 4).tolist(), rel=1e-9)
    assert max(abs(v) for v in out["kl"]) < 1e-5
    # a later slice of windows reads the reference at its offset
    part = window_scores(model, windows[3:], 4, ref, offset=3)
    assert part["nll"] == pytest.approx(out["nll"][3:], rel=1e-9)
    assert max(abs(v) for v in part["kl"]) < 1e-5
    # a perturbed model has positive KL; its stage score is the mean of the window values
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    bad = window_scores(model, windows, 4, ref)
    assert min(bad["kl"]) > 0
    assert score_of("kl", bad["kl"]) == pytest.approx(sum(bad["kl"]) / 6)
    assert score_of("ppl", bad["nll"]) == pytest.approx(math.exp(sum(bad["nll"]) / 6))


def test_reference_cache_round_trip(tmp_path):
    model = make_llama()
    windows = torch.randint(0, 128, (4, 10), generator=torch.Generator().manual_seed(2))
    ev = {"data": "x", "split": "validation", "seqlen": 10, "max_windows": 4, "batch_size": 4}
    a = cached_reference(model, "tiny-1", windows, ev, 8, tmp_path)
    files = list((tmp_path / "references").glob("*.safetensors"))
    assert len(files) == 1
    with torch.no_grad():  # the cache is read back, not recomputed from the (changed) model
        model.lm_head.weight.mul_(0.0)
    b = cached_reference(model, "tiny-1", windows, ev, 8, tmp_path)
    assert torch.equal(a.logp, b.logp) and torch.equal(a.index, b.index)
    assert a.nbytes() == 4 * 9 * 8 * 8
