"""Masks of one fixed score at many sparsities (pure math): the per-row ascending order of the
score is sorted once (stable, so ties go to the lower index exactly as ``masks.make_mask``
decides), and the mask of the lowest k weights of every row is then a prefix of that order. The
allocation search scores one tree at hundreds of allocations; this replaces a top-k per linear
and candidate by a scatter."""

from __future__ import annotations

import torch


class RankedScores:
    """``mask(ratio)`` == ``make_mask(score, ratio, unstructured row scope)``, for any ratio."""

    def __init__(self, score: torch.Tensor):
        if score.dim() != 2:
            raise ValueError(f"score must be 2-D [out, in], got shape {tuple(score.shape)}")
        self.shape = tuple(score.shape)
        order = torch.sort(score, dim=-1, stable=True).indices
        self.order = order.to(torch.int16 if self.shape[1] <= 1 << 15 else torch.int32)

    def nbytes(self) -> int:
        return self.order.numel() * self.order.element_size()

    def mask(self, ratio: float) -> torch.Tensor:
        rows, cols = self.shape
        k = int(ratio * cols)
        out = torch.zeros(self.shape, dtype=torch.bool)
        if k >= cols:
            return ~out
        if k > 0:
            out.scatter_(1, self.order[:, :k].long(), True)
        return out
