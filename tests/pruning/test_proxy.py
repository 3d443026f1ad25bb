"""The hurdle's proxy: the removed share of output energy, against a direct computation."""

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.pruning.proxy import OutputErrorProxy, output_energy, proxy_blocks, removed_share
from gpsearch.tree import EXTENDED, parse_prefix
from gpsearch.workers.serial import SerialBackend

pytestmark = pytest.mark.usefixtures("one_thread")


def test_proxy_blocks_are_evenly_spaced():
    assert proxy_blocks(30) == (0, 10, 20)
    assert proxy_blocks(2) == (0, 1) and proxy_blocks(4) == (0, 1, 2)
    assert proxy_blocks(1) == (0,)
    with pytest.raises(ValueError):
        proxy_blocks(0)


def test_removed_share_is_the_energy_of_the_pruned_weights():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(5, 7, generator=g), torch.rand(7, generator=g)
    mask = torch.rand(5, 7, generator=g) > 0.5
    # by hand: sum over pruned (i, j) of w_ij^2 x_j, over the same sum for all (i, j)
    num = sum(float(w[i, j]) ** 2 * float(x[j]) for i in range(5) for j in range(7) if mask[i, j])
    den = sum(float(w[i, j]) ** 2 * float(x[j]) for i in range(5) for j in range(7))
    energy = output_energy(w.abs(), x)
    assert removed_share(energy, mask) == pytest.approx(num / den, rel=1e-6)
    assert removed_share(energy, torch.zeros(5, 7, dtype=torch.bool)) == 0.0
    assert removed_share(energy, torch.ones(5, 7, dtype=torch.bool)) == pytest.approx(1.0)


def backend(tiny_lm, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4, batch_size=2)
    evaluator = Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)
    return SerialBackend(evaluator, 0.5, parse_pattern("unstructured", 0.5), ev)


def test_backend_proxy_from_cached_masks_equals_fresh_and_ranks_wanda_above_its_inverse(
        tiny_lm, corpus, tmp_path):
    be = backend(tiny_lm, corpus, tmp_path)
    fresh = be.proxy_many(["mul(W, sqrt(X))", "neg(mul(W, sqrt(X)))"])
    be.fingerprint_many(["mul(W, sqrt(X))"])  # keeps its whole masks
    assert be.masks.get("mul(W, sqrt(X))") is not None
    assert be.proxy_one("mul(W, sqrt(X))") == pytest.approx(fresh[0], rel=1e-9)
    # Wanda's score minimises exactly this energy per row (X-weighted |W|^2 is its square), so
    # no mask at 50% per row removes less; the reversed score removes the most
    assert fresh[0] < 0.5 < fresh[1]
    proxy = OutputErrorProxy(be.evaluator)
    masks = be.evaluator.compute_masks(parse_prefix("mul(W, sqrt(X))", EXTENDED), 0.5, be.pattern)
    x = be.evaluator.features.get("X")
    by_hand = [removed_share(output_energy(be.evaluator.abs_weight(n), x[n]), masks[n])
               for n in proxy.names]
    assert fresh[0] == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-9)
    assert be.proxy_one("sub(W, W)") is None  # a constant tree fails on the features
