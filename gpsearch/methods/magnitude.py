"""Magnitude pruning: zero the weights of smallest absolute value. No calibration data.

Two comparison groups for unstructured sparsity:
- ``matrix`` (the reference baseline of the Wanda / SparseGPT code): one threshold per whole
  weight matrix, i.e. the ``int(s * numel)`` smallest |w| of each linear;
- ``row``: the ``int(s * in_features)`` smallest |w| of every output row (Wanda's group).
N:M patterns always compare within each group of M consecutive inputs of a row.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from gpsearch.pruning.masks import Pattern, make_mask

SCOPES = ("matrix", "row")


def magnitude_mask(weight: torch.Tensor, sparsity: float, pattern: Pattern,
                   scope: str = "matrix") -> torch.Tensor:
    """Boolean mask (True = prune) of the smallest-magnitude weights of one matrix."""
    if scope not in SCOPES:
        raise ValueError(f"unknown magnitude scope {scope!r}; choose matrix or row")
    if pattern.kind == "unstructured":
        pattern = dataclasses.replace(pattern, scope=scope)
    return make_mask(weight.detach().abs().float(), sparsity, pattern)


@torch.no_grad()
def prune_magnitude(evaluator, sparsity: float, pattern: Pattern, scope: str = "matrix") -> dict:
    """Magnitude-prune every prunable linear of ``evaluator.model`` in place (the caller restores).
    Returns extra information for the result record."""
    t0 = time.perf_counter()
    for lin in evaluator.linears.values():
        lin.weight.masked_fill_(magnitude_mask(lin.weight, sparsity, pattern, scope), 0.0)
    return {"method": "magnitude",
            "scope": scope if pattern.kind == "unstructured" else "n:m group",
            "calibration_used": False, "prune_s": time.perf_counter() - t0}
