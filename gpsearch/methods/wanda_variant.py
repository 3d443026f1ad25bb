"""Wanda's ``--use_variant`` mask: per-row cumulative-score threshold tuned by bisection on alpha.

For each output row r, sort the scores ascending (stable: ties keep column order) and let
c_r(k) = sum of the k smallest scores. For a given alpha the row prunes its first k_r sorted
entries, where

    k_r(alpha) = #{ k >= 1 : c_r(k) <= alpha * c_r(in) }

(for non-negative scores c_r is non-decreasing, so these are exactly the positions whose
cumulative score stays within alpha times the row total). Rows with a flat score distribution
thus prune more than rows with a few large scores. alpha is bisected (start alpha0, bracket
[lo, hi]) until the achieved sparsity sum_r k_r / numel is within ``tol`` of the target or the
bracket is narrower than ``tol``: the bracket limits what is reachable (with hi = 0.8 a row never
prunes more than 80% of its total score).
"""

from __future__ import annotations

import torch


def _sorted_cumsum(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(column order of the ascending stable sort, cumulative sorted scores in float64, totals)."""
    order = torch.sort(score, dim=1, stable=True).indices
    cums = torch.cumsum(torch.gather(score, 1, order).double(), dim=1)
    return order, cums, cums[:, -1]


def _counts(cums: torch.Tensor, totals: torch.Tensor, alpha: float) -> torch.Tensor:
    """k_r(alpha): how many sorted positions of each row stay within alpha * row total."""
    return (cums <= alpha * totals[:, None]).sum(dim=1)


def mask_for_alpha(score: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mask (True = pruned) that the variant gives for a fixed alpha, without any bisection."""
    order, cums, totals = _sorted_cumsum(score)
    return _mask_from_counts(order, _counts(cums, totals, alpha))


def _mask_from_counts(order: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    cols = order.shape[1]
    in_sorted = torch.arange(cols, device=order.device)[None, :] < counts[:, None]
    return torch.zeros_like(in_sorted).scatter_(1, order, in_sorted)


def wanda_variant_mask(score: torch.Tensor, sparsity: float, alpha0: float = 0.4,
                       bracket: tuple[float, float] = (0.0, 0.8), tol: float = 0.001
                       ) -> tuple[torch.Tensor, float, float]:
    """Bisect alpha so the variant's mask reaches ``sparsity``; returns (mask, alpha, achieved).

    mask is bool with True = pruned; achieved = fraction of the matrix pruned by that mask.
    Bisection step (as in the reference): if achieved > target, hi <- alpha and
    alpha <- (alpha + lo) / 2, else lo <- alpha and alpha <- (alpha + hi) / 2; repeat while
    |achieved - target| > tol and hi - lo >= tol. Scores are expected to be non-negative."""
    if score.dim() != 2:
        raise ValueError(f"score must be 2-D [out, in], got shape {tuple(score.shape)}")
    if score.numel() == 0:
        raise ValueError("score is empty")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    lo, hi = float(bracket[0]), float(bracket[1])
    if not lo <= alpha0 <= hi:
        raise ValueError(f"alpha0={alpha0} lies outside the bracket [{lo}, {hi}]")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if not bool(torch.isfinite(score).all()):
        raise ValueError("score contains NaN or infinite values")

    order, cums, totals = _sorted_cumsum(score.detach())
    numel = score.numel()
    alpha = float(alpha0)
    counts = _counts(cums, totals, alpha)
    achieved = int(counts.sum()) / numel
    while abs(achieved - sparsity) > tol and hi - lo >= tol:
        if achieved > sparsity:
            hi, alpha = alpha, (alpha + lo) / 2.0
        else:
            lo, alpha = alpha, (alpha + hi) / 2.0
        counts = _counts(cums, totals, alpha)
        achieved = int(counts.sum()) / numel
    return _mask_from_counts(order, counts), alpha, achieved
