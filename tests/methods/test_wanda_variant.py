"""Wanda's cumulative-score variant against a brute-force per-row computation."""

from __future__ import annotations

import pytest
import torch

from gpsearch.methods.wanda_variant import mask_for_alpha, wanda_variant_mask


def scores(rows=48, cols=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Wanda-like: |W| * ||x_j|| with uneven column norms, so rows differ in shape
    return torch.randn(rows, cols, generator=g).abs() * torch.rand(cols, generator=g) * 3


def brute_mask(score, alpha):
    """Per row in plain Python: walk the stably sorted scores, prune while the running sum
    stays within alpha * row total."""
    mask = torch.zeros(score.shape, dtype=torch.bool)
    for r, row in enumerate(score.double().tolist()):
        total = sum(sorted(row))
        running = 0.0
        for c in sorted(range(len(row)), key=lambda c: row[c]):
            running += row[c]
            if running > alpha * total:
                break
            mask[r, c] = True
    return mask


def brute_bisection(score, target, alpha=0.4, lo=0.0, hi=0.8, tol=0.001):
    got = float(brute_mask(score, alpha).double().mean())
    while abs(got - target) > tol and hi - lo >= tol:
        if got > target:
            hi, alpha = alpha, (alpha + lo) / 2
        else:
            lo, alpha = alpha, (alpha + hi) / 2
        got = float(brute_mask(score, alpha).double().mean())
    return alpha, got


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.6, 0.7])
def test_reaches_target_and_orders_rows(sparsity):
    s = scores(seed=int(sparsity * 10))
    mask, alpha, got = wanda_variant_mask(s, sparsity)
    assert mask.dtype == torch.bool and mask.shape == s.shape
    assert abs(got - sparsity) <= 0.001
    assert got == pytest.approx(float(mask.double().mean()))
    assert 0.0 <= alpha <= 0.8
    for r in range(s.shape[0]):
        pruned, kept = s[r][mask[r]], s[r][~mask[r]]
        if len(pruned) and len(kept):
            assert float(pruned.max()) <= float(kept.min())
    # rows do not all prune the same count: the threshold is on cumulative score, not on rank
    assert len(set(mask.sum(dim=1).tolist())) > 1


@pytest.mark.parametrize("sparsity", [0.4, 0.5])
def test_matches_brute_force(sparsity):
    s = scores(rows=12, cols=40, seed=3)
    mask, alpha, got = wanda_variant_mask(s, sparsity)
    assert torch.equal(mask, brute_mask(s, alpha))
    assert torch.equal(mask_for_alpha(s, alpha), mask)
    ref_alpha, ref_got = brute_bisection(s, sparsity)
    assert alpha == pytest.approx(ref_alpha, abs=1e-12)
    assert got == pytest.approx(ref_got, abs=1e-12)


def test_bracket_exhausted_terminates():
    s = scores(rows=12, cols=40, seed=5)
    mask, alpha, got = wanda_variant_mask(s, 0.95)  # unreachable with alpha <= 0.8
    assert got < 0.95 - 0.001
    assert 0.8 - 0.001 <= alpha <= 0.8
    assert torch.equal(mask, brute_mask(s, alpha))
    assert alpha == pytest.approx(brute_bisection(s, 0.95)[0], abs=1e-12)


def test_ties_prune_lower_columns_first():
    s = torch.ones(2, 10)
    mask = mask_for_alpha(s, 0.35)  # cumulative 1, 2, 3 <= 3.5
    expected = torch.zeros(2, 10, dtype=torch.bool)
    expected[:, :3] = True
    assert torch.equal(mask, expected)
    expected[:, 3:5] = True  # cumulative 5 == 0.5 * 10 exactly: still within, so pruned
    assert torch.equal(mask_for_alpha(s, 0.5), expected)


def test_heavy_ties_match_brute_force():
    g = torch.Generator().manual_seed(7)
    s = torch.randint(0, 4, (6, 300), generator=g).float()
    mask, alpha, _ = wanda_variant_mask(s, 0.5)
    assert torch.equal(mask, brute_mask(s, alpha))


def test_argument_checks():
    s = scores(rows=4, cols=8)
    with pytest.raises(ValueError):
        wanda_variant_mask(s, 1.0)
    with pytest.raises(ValueError):
        wanda_variant_mask(s, 0.5, alpha0=0.9)
    with pytest.raises(ValueError):
        wanda_variant_mask(s.flatten(), 0.5)
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError):
        wanda_variant_mask(bad, 0.5)
