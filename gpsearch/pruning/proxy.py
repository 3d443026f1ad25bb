"""The hurdle's proxy: how much of a few linears' output a tree's masks remove, from the cached
input statistics alone (no forward pass).

For a linear y = W x with input channel j of mean squared norm X_j, zeroing w_ij changes output
i by w_ij x_j, whose expected square is w_ij^2 X_j when the inputs are uncorrelated. So the
share of output energy a mask M (True = pruned) removes is

    e(M) = sum_ij W_ij^2 X_j M_ij / sum_ij W_ij^2 X_j

and the proxy of a tree is e averaged over the linears of a few decoder blocks (0, n/3, 2n/3 by
default). Lower is better. ``scripts/bench_hurdle.py`` measures how well it ranks trees against
the first-stage fitness (bench/hurdle.json); the search rejects a candidate whose proxy exceeds
``hurdle`` times the Wanda tree's (``gpsearch.engine.evaluation``).
"""

from __future__ import annotations

import torch

from gpsearch.allocation.levels import block_index


def proxy_blocks(n_blocks: int, k: int = 3) -> tuple[int, ...]:
    """k evenly spaced decoder blocks: 0, n/k, 2n/k, ... (0, 10, 20 of 30)."""
    if n_blocks < 1:
        raise ValueError("a model with no decoder block")
    return tuple(sorted({(i * n_blocks) // k for i in range(k)}))


def output_energy(abs_weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """W_ij^2 X_j: the expected squared output change of zeroing each weight ([out, in])."""
    return abs_weight.float() ** 2 * x.float().reshape(1, -1)


def removed_share(energy: torch.Tensor, mask: torch.Tensor) -> float:
    """e(M): the share of the output energy the pruned weights (mask True) carry."""
    total = float(energy.sum())
    return float((energy * mask.to(energy.device)).sum()) / total if total > 0 else 0.0


class OutputErrorProxy:
    """e(M) averaged over the linears of ``blocks`` of an Evaluator's model (energies computed
    once from the dense weights and the X feature)."""

    def __init__(self, evaluator, blocks: tuple[int, ...] | None = None):
        names = list(evaluator.linears)
        indices = sorted({block_index(n) for n in names})
        blocks = proxy_blocks(len(indices)) if blocks is None else tuple(blocks)
        chosen = {indices[b] for b in blocks if 0 <= b < len(indices)}
        self.names = [n for n in names if block_index(n) in chosen]
        if not self.names:
            raise ValueError(f"no prunable linear in blocks {blocks}")
        x = evaluator.features.get("X")
        self.energy = {n: output_energy(evaluator.abs_weight(n), x[n]) for n in self.names}

    def __call__(self, masks: dict) -> float:
        """masks: {linear name: bool mask of the weights to zero}, for at least ``names``."""
        return sum(removed_share(self.energy[n], masks[n]) for n in self.names) / len(self.names)
