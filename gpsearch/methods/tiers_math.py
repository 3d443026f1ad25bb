"""Progressive three-tier block pruning (seed 004): the pure tensor math.

A weight matrix [rows, cols] is cut into ``bs x bs`` blocks; a *tier map* is an int8 tensor
[rows/bs, cols/bs] holding each block's tier:

- ``DENSE`` (0): every weight kept;
- ``MID_2_4`` (1): in each row of the block, the 2 highest-scoring of every 4 consecutive inputs
  kept;
- ``TOPK`` (2): only the ``k`` highest-scoring weights of the whole block kept.

Demotion is one-way (DENSE -> 2:4 -> TOPK) and masks only ever shrink: a weight pruned once is
never selected again (its score is treated as -inf). One iteration (``demote_iteration``):

1. score every DENSE block (sum of its weights' scores) and demote the lowest ``x`` fraction of the
   DENSE blocks to 2:4;
2. re-score ALL 2:4 blocks (including the ones just demoted) counting only their kept (non-zero)
   weights under the 2:4 pattern, and demote the lowest ``y`` fraction of the 2:4 blocks to TOPK.

Block scores are computed by a reshape into [rows/bs, cols/bs, bs, bs] (an unfold without copies)
and one reduction: no Python loop over blocks. Ties go to the block with the lower flat index.
"""

from __future__ import annotations

import torch

from gpsearch.errors import UserError

DENSE, MID_2_4, TOPK = 0, 1, 2
TIER_NAMES = {DENSE: "dense", MID_2_4: "mid_2_4", TOPK: "topk"}
NEG = float("-inf")


def check_shape(shape, bs: int) -> None:
    rows, cols = shape
    if rows % bs or cols % bs:
        raise UserError(f"a {rows}x{cols} weight cannot be cut into {bs}x{bs} blocks")
    if bs % 4:
        raise UserError(f"block size {bs} must be a multiple of 4 "
                        "(the 2:4 tier works in groups of 4)")


def new_tiers(shape, bs: int) -> torch.Tensor:
    """An all-DENSE tier map for a weight of this shape."""
    check_shape(shape, bs)
    return torch.zeros(shape[0] // bs, shape[1] // bs, dtype=torch.int8)


def blocks(x: torch.Tensor, bs: int) -> torch.Tensor:
    """View [rows, cols] as [rows/bs, cols/bs, bs, bs] (block (i, j) = x[i*bs:(i+1)*bs,
    j*bs:...])."""
    r, c = x.shape
    return x.reshape(r // bs, bs, c // bs, bs).transpose(1, 2)


def unblocks(xb: torch.Tensor) -> torch.Tensor:
    """Inverse of ``blocks``."""
    nr, nc, bs, _ = xb.shape
    return xb.transpose(1, 2).reshape(nr * bs, nc * bs)


def expand(tiers: torch.Tensor, bs: int) -> torch.Tensor:
    """The tier of every weight: [rows/bs, cols/bs] -> [rows, cols]."""
    return tiers.repeat_interleave(bs, 0).repeat_interleave(bs, 1)


def block_scores(score: torch.Tensor, keep: torch.Tensor, bs: int) -> torch.Tensor:
    """Sum of the scores of each block's kept weights: [rows/bs, cols/bs] (float64)."""
    s = torch.where(keep, score.double(), torch.zeros((), dtype=torch.float64))
    return blocks(s, bs).sum(dim=(-1, -2))


def _top_in_groups(score: torch.Tensor, n: int) -> torch.Tensor:
    """Mask of the n highest entries along the last dim (ties: the lower index wins)."""
    order = torch.sort(-score, dim=-1, stable=True).indices[..., :n]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, order, True)


def mask_2_4(score: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep the 2 highest-scoring kept weights of every 4 consecutive inputs in each row."""
    r, c = score.shape
    s = torch.where(keep, score.double(), torch.full((), NEG, dtype=torch.float64))
    top = _top_in_groups(s.reshape(r, c // 4, 4), 2).reshape(r, c)
    return top & keep


def mask_topk(score: torch.Tensor, keep: torch.Tensor, bs: int, k: int) -> torch.Tensor:
    """Keep the k highest-scoring kept weights of every block."""
    s = torch.where(keep, score.double(), torch.full((), NEG, dtype=torch.float64))
    sb = blocks(s, bs)
    nr, nc = sb.shape[:2]
    top = _top_in_groups(sb.reshape(nr, nc, bs * bs), min(k, bs * bs)).reshape(nr, nc, bs, bs)
    return unblocks(top) & keep


def tier_mask(tiers: torch.Tensor, score: torch.Tensor, keep: torch.Tensor, bs: int,
              k: int) -> torch.Tensor:
    """The keep-mask [rows, cols] implied by a tier map, never reviving a pruned weight."""
    t = expand(tiers, bs)
    return torch.where(t == DENSE, keep,
                       torch.where(t == MID_2_4, mask_2_4(score, keep),
                                   mask_topk(score, keep, bs, k)))


def demote(tiers: torch.Tensor, bscore: torch.Tensor, src: int, dst: int,
           frac: float) -> torch.Tensor:
    """Move the lowest-scoring ``round(frac * #src blocks)`` blocks of tier ``src`` to ``dst``."""
    flat = tiers.reshape(-1)
    is_src = flat == src
    n = int(round(frac * int(is_src.sum())))
    out = flat.clone()
    if n > 0:
        s = torch.where(is_src, bscore.reshape(-1).double(),
                        torch.full((), float("inf"), dtype=torch.float64))
        idx = torch.sort(s, stable=True).indices[:n]
        out[idx] = dst
    return out.reshape(tiers.shape)


def demote_iteration(tiers: torch.Tensor, score: torch.Tensor, keep: torch.Tensor, bs: int, k: int,
                     to_mid: float, to_topk: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration's two demotion phases. ``score`` [rows, cols] is the metric on the current
    weights; ``keep`` the current keep-mask. Returns (new tier map, new keep-mask)."""
    check_shape(score.shape, bs)
    phase1 = demote(tiers, block_scores(score, keep, bs), DENSE, MID_2_4, to_mid)
    keep1 = tier_mask(phase1, score, keep, bs, k)  # 2:4 pattern of the just-demoted blocks
    phase2 = demote(phase1, block_scores(score, keep1, bs), MID_2_4, TOPK, to_topk)
    return phase2, tier_mask(phase2, score, keep1, bs, k)


def tier_shares(tiers: torch.Tensor) -> dict[str, float]:
    """Fraction of blocks in each tier."""
    n = tiers.numel()
    return {name: int((tiers == t).sum()) / n for t, name in TIER_NAMES.items()}


def implied_sparsity(mid: float, topk: float, bs: int, k: int) -> float:
    """Fraction of zeros when ``mid`` of the blocks are 2:4 and ``topk`` keep k of bs*bs."""
    return mid * 0.5 + topk * (1.0 - min(k, bs * bs) / (bs * bs))
