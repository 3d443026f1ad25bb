"""Weight update after any mask: block-sequential least-squares reconstruction.

``reconstruct_model`` takes one mask per prunable linear (True = pruned; by default the zeros a
mask-only method has just written into the model), puts the dense weights back and then, block by
block as SparseGPT does: one pass of the block's current inputs (the calibration samples through
the already reconstructed earlier blocks) through the DENSE block accumulates every linear's
Hessian H = (2/n) sum X^T X (linears with the same input tensor share one), each linear is
replaced by the damped least-squares weights under its mask (``recon_math.reconstruct_rows``: the
dense weights' outputs on those inputs are the target), and the reconstructed block's outputs feed
the next block. The mask is never changed.

``prune_then_reconstruct`` runs any mask-only pruning function first: its mask is exactly the one
it computes alone (its own statistics flow through its own pruned blocks); the reconstruction
then starts again from the dense model with that mask (two more passes per block).
``tree_then_reconstruct`` does a metric tree's mask and the reconstruction in one flow (two
passes per block, as SparseGPT): each block's mask comes from the same pass as its Hessians.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from gpsearch.allocation.levels import ratio_of
from gpsearch.methods.recon_math import SOLVERS, reconstruct_rows
from gpsearch.methods.sparsegpt import SharedHessians
from gpsearch.model.blocks import block_linears
from gpsearch.model.blockwise import feed_block, sequential_blocks

RECON_KNOBS = ("percdamp", "solver", "max_iter", "tol")


def current_masks(evaluator) -> dict[str, torch.Tensor]:
    """The zeros of every prunable linear of ``evaluator.model`` (True = pruned)."""
    return {n: (lin.weight == 0).detach().clone() for n, lin in evaluator.linears.items()}


def check_recon_options(percdamp: float = 0.01, solver: str = "cg", max_iter: int = 20,
                        tol: float = 1e-4) -> None:
    from gpsearch.errors import UserError

    if not (isinstance(percdamp, (int, float)) and percdamp > 0):
        raise UserError(f"recon percdamp must be > 0, got {percdamp!r}")
    if solver not in SOLVERS:
        raise UserError(f"recon solver must be {' or '.join(SOLVERS)}, got {solver!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise UserError(f"recon max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise UserError(f"recon tol must be >= 0, got {tol!r}")


@torch.no_grad()
def reconstruct_model(evaluator, masks: dict[str, torch.Tensor], percdamp: float = 0.01,
                      solver: str = "cg", max_iter: int = 20, tol: float = 1e-4) -> dict:
    """Replace every prunable linear of ``evaluator.model`` by its reconstruction under
    ``masks`` (block-sequential, on the evaluator's calibration samples). Returns a record."""
    check_recon_options(percdamp, solver, max_iter, tol)
    missing = set(evaluator.linears) - set(masks)
    if missing:
        raise ValueError(f"no mask for {sorted(missing)[:3]}")
    evaluator.restore()
    rec = _blockwise_reconstruct(evaluator, lambda i, linears, hess, xs: {
        n: masks[f"{i}.{n}"] for n in linears}, "recon blocks", False, percdamp, solver,
        max_iter, tol)
    return {"update": "recon", "percdamp": percdamp, "solver": solver, "max_iter": max_iter,
            "tol": tol, **rec}


def _blockwise_reconstruct(evaluator, block_masks, desc: str, want_x: bool, percdamp: float,
                           solver: str, max_iter: int, tol: float) -> dict:
    """The block-sequential flow both entry points share: per block, one pass of its current
    inputs through the (dense) block accumulates the Hessians (and, with ``want_x``, each
    linear's InputStats), ``block_masks(i, linears, hess, xs)`` gives {name: mask}, and every
    linear is replaced by its reconstruction under its mask. Returns seconds and timings."""
    from gpsearch.pruning.stats import InputStats

    times = {"hessian_s": 0.0, "solve_s": 0.0}

    def process(i, block, inputs):
        linears = block_linears(block)
        t0 = time.perf_counter()
        hess = SharedHessians(linears)
        xs = {n: InputStats(lin.in_features, device=lin.weight.device)
              for n, lin in linears.items()} if want_x else {}

        def on_input(b, name, x):
            hess.add(b, name, x)
            if want_x:
                xs[name].add(x)

        feed_block(block, inputs, linears, on_input)
        t1 = time.perf_counter()
        masks = block_masks(i, linears, hess, xs)
        for name, lin in linears.items():
            _write_back(lin, reconstruct_rows(lin.weight.detach().float(), hess.hessian(name),
                                              masks[name], percdamp=percdamp, solver=solver,
                                              max_iter=max_iter, tol=tol), masks[name])
        times["hessian_s"] += t1 - t0
        times["solve_s"] += time.perf_counter() - t1

    t = time.perf_counter()
    sequential_blocks(evaluator.model, evaluator.features.samples(), evaluator.calib.batch_size,
                      process, progress=evaluator.progress, desc=desc)
    total = time.perf_counter() - t
    return {"recon_s": total,
            "timings": {**times, "forward_s": total - times["hessian_s"] - times["solve_s"]}}


def _write_back(lin, new_w, mask) -> None:
    """The reconstructed weights into the linear, its pruned weights exactly zero."""
    lin.weight.copy_(new_w.to(lin.weight.dtype))
    lin.weight.masked_fill_(mask.to(lin.weight.device), 0.0)


def prune_then_reconstruct(evaluator, prune: Callable[[], dict | None], **recon) -> dict:
    """``prune()`` (any mask-only method, in place), then ``reconstruct_model`` on its zeros."""
    t = time.perf_counter()
    info = prune() or {}
    mask_s = time.perf_counter() - t
    rec = reconstruct_model(evaluator, current_masks(evaluator), **recon)
    return {**info, "recon": {**rec, "mask_s": mask_s}}


def _inverse_hessian_diag(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """The extended space's ``H`` terminal from a Hessian (same formula as stats.InputStats)."""
    h = H.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(percdamp * torch.mean(torch.diag(h)))
    return torch.diag(torch.cholesky_inverse(torch.linalg.cholesky(h))).float().unsqueeze(0)


@torch.no_grad()
def tree_then_reconstruct(evaluator, tree, sparsity: float, pattern, mode: str = "sequential",
                          percdamp: float = 0.01, solver: str = "cg", max_iter: int = 20,
                          tol: float = 1e-4) -> dict:
    """A metric tree's mask and the reconstruction in ONE block-sequential flow (two passes per
    block, as SparseGPT): the pass that accumulates each linear's Hessian also gives the tree's
    X (Wanda's scaler_row) and H of that block's inputs (``mode`` sequential; dense: the cached
    dense-model features), the tree's mask is taken on the still dense block (W = |dense
    weight|), then the kept weights are reconstructed under it and the block's outputs feed the
    next block. The statistics of later blocks therefore come from reconstructed blocks."""
    from gpsearch.pruning.masks import make_mask
    from gpsearch.tree import terminals_used

    check_recon_options(percdamp, solver, max_iter, tol)
    needed = terminals_used(tree)
    want_x = mode == "sequential" and bool(needed & {"X", "S"})
    want_h = mode == "sequential" and "H" in needed
    if "G" in needed:
        evaluator.features.get("G")
    if mode == "dense":
        evaluator.prepare(tree)
    evaluator.restore()

    def block_masks(i, linears, hess, xs):
        local = None
        if want_x or want_h:
            local = {"X": {f"{i}.{n}": st.x for n, st in xs.items()}}
            if want_h:
                local["H"] = {f"{i}.{n}": _inverse_hessian_diag(hess.hessian(n)) for n in linears}
        return {n: make_mask(evaluator.score(tree, f"{i}.{n}", local),
                             ratio_of(sparsity, f"{i}.{n}"), pattern) for n in linears}

    rec = _blockwise_reconstruct(evaluator, block_masks, "mask+recon blocks", want_x, percdamp,
                                 solver, max_iter, tol)
    return {"features": mode, "recon": {
        "update": "recon", "flow": "one pass: mask and reconstruction per block",
        "percdamp": percdamp, "solver": solver, "max_iter": max_iter, "tol": tol, **rec}}
