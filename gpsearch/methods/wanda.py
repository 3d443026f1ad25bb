"""Wanda (Sun et al. 2024): score |W| * sqrt(X), compared per output row, block-sequential.

- ``prune_wanda(..., use_variant=False)``: the ``wanda`` metric tree through the evaluator's
  sequential flow (statistics of every linear of a block from one pass of the block's current
  inputs, the pruned block's outputs feed the next block). No weight update.
- ``use_variant=True`` (Wanda's ``--use_variant``, unstructured only): per row, prune the weights
  whose cumulative sorted score stays within alpha * the row total, with alpha found by bisection
  so the matrix reaches the requested sparsity (``wanda_variant_mask``). Same sequential flow.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from gpsearch.errors import UserError
from gpsearch.methods.wanda_variant import wanda_variant_mask
from gpsearch.model.blocks import block_linears
from gpsearch.model.blockwise import feed_block, sequential_blocks
from gpsearch.pruning.masks import Pattern, make_mask
from gpsearch.pruning.stats import InputStats
from gpsearch.tree import load_tree


def wanda_score(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(X) for a weight [out, in] and Wanda's scaler_row X [1, in] (squared norms)."""
    return weight.detach().abs().float() * x.float().reshape(1, -1).sqrt()


def wanda_mask(weight: torch.Tensor, x: torch.Tensor, sparsity: float,
               pattern: Pattern) -> torch.Tensor:
    """The Wanda mask (True = prune): per row for unstructured, per M-group for N:M."""
    if pattern.kind == "unstructured":
        pattern = dataclasses.replace(pattern, scope="row")
    return make_mask(wanda_score(weight, x), sparsity, pattern)


def block_input_stats(block, inputs, linears) -> dict[str, InputStats]:
    """X of every linear of ``block`` from one pass of its current ``inputs``."""
    seqlen = inputs[0].hidden.shape[-2] if inputs else None  # OPT's fc1 / fc2 see [b * t, in]
    stats = {n: InputStats(lin.in_features, device=lin.weight.device, tokens_per_sample=seqlen)
             for n, lin in linears.items()}
    feed_block(block, inputs, linears, lambda b, name, x: stats[name].add(x))
    return stats


def prune_wanda(evaluator, sparsity: float, pattern: Pattern, use_variant: bool = False,
                alpha0: float = 0.4, bracket: tuple[float, float] = (0.0, 0.8), tol: float = 0.001,
                features: str = "sequential") -> dict:
    """Wanda-prune ``evaluator.model`` in place on the evaluator's calibration samples (the
    caller restores). Returns extra information for the result record."""
    if pattern.kind == "unstructured":
        pattern = dataclasses.replace(pattern, scope="row")
    if not use_variant:
        evaluator.prune(load_tree("wanda"), sparsity, pattern, mode=features)
        return {"method": "wanda", "features": features, "calibration": evaluator.calib.to_dict(),
                "prune_s": sum(evaluator.timings.values()), "timings": dict(evaluator.timings)}
    if pattern.kind != "unstructured":
        raise UserError("the Wanda variant (alpha search) is defined for unstructured "
                        "sparsity only")
    if features != "sequential":
        raise UserError("the Wanda variant runs block-sequentially only")
    alphas: dict[str, float] = {}
    achieved: dict[str, float] = {}

    def process(i, block, inputs):
        linears = block_linears(block)
        stats = block_input_stats(block, inputs, linears)
        for name, lin in linears.items():
            mask, alpha, got = wanda_variant_mask(wanda_score(lin.weight, stats[name].x), sparsity,
                                                  alpha0=alpha0, bracket=bracket, tol=tol)
            lin.weight.masked_fill_(mask, 0.0)
            alphas[f"{i}.{name}"], achieved[f"{i}.{name}"] = float(alpha), float(got)

    t = time.perf_counter()
    with torch.no_grad():
        sequential_blocks(evaluator.model, evaluator.features.samples(), evaluator.calib.batch_size,
                          process, progress=evaluator.progress, desc="wanda-variant blocks")
    return {"method": "wanda-variant", "features": "sequential", "alpha0": alpha0,
            "bracket": list(bracket), "tol": tol, "calibration": evaluator.calib.to_dict(),
            "alpha_mean": sum(alphas.values()) / max(1, len(alphas)),
            "alpha_range": [min(alphas.values(), default=0.0), max(alphas.values(), default=0.0)],
            "layer_sparsity_range": [min(achieved.values(), default=0.0),
                                     max(achieved.values(), default=0.0)],
            "prune_s": time.perf_counter() - t}
