"""SparseGPT, block-sequential through the model (Frantar & Alistarh 2023).

For every decoder block in order: one pass of the block's current inputs (the calibration samples
propagated through the already-pruned earlier blocks) accumulates the Hessian H = (2/n) sum X^T X
of every linear's inputs; then each linear is pruned and updated in place by ``sparsegpt_prune``
(damped Hessian, Cholesky of the inverse, lazy column batches, adaptive masks every Bs columns,
OBS error propagation, N:M); the pruned block's outputs feed the next block.

Two exact savings over a naive implementation, neither changing the result:
- linears that receive the very same input tensor (LLaMA's q/k/v, gate/up) share one Hessian;
- the statistics pass of a block stops as soon as every linear has received its input (the last
  linear's matmul and whatever follows it are not needed to collect the inputs).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from gpsearch.allocation.levels import ratio_of
from gpsearch.methods.sparsegpt_math import HessianAccumulator, sparsegpt_prune
from gpsearch.model.blocks import block_linears
from gpsearch.model.blockwise import feed_block, sequential_blocks
from gpsearch.pruning.masks import Pattern
from gpsearch.pruning.stats import InputStats


class SharedHessians:
    """One ``HessianAccumulator`` per distinct input: a linear whose input is the very same tensor
    object as an earlier linear's in the same batch (q/k/v, gate/up) reuses that accumulator.
    The grouping is fixed by the first batch and checked on every later one."""

    def __init__(self, linears: dict[str, nn.Linear]):
        self.linears = linears
        self.acc: dict[str, HessianAccumulator] = {}
        self.leader: dict[str, str] = {}
        self._batch, self._seen = -1, []

    def add(self, batch: int, name: str, x: torch.Tensor) -> None:
        if batch != self._batch:
            self._batch, self._seen = batch, []
        lead = next((ln for t, ln in self._seen if t is x), name)
        if self.leader.setdefault(name, lead) != lead:
            raise RuntimeError(f"input sharing of {name} changed between calibration batches")
        if lead != name:
            return
        self._seen.append((x, name))
        if name not in self.acc:
            self.acc[name] = HessianAccumulator(self.linears[name].in_features)
        self.acc[name].add_batch(x)

    def hessian(self, name: str) -> torch.Tensor:
        """A private copy of the Hessian of ``name``'s inputs (the solver may modify it)."""
        return self.acc[self.leader[name]].H.clone()

    def groups(self) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for name, lead in self.leader.items():
            out.setdefault(lead, []).append(name)
        return list(out.values())


@torch.no_grad()
def prune_linear(lin: nn.Linear, H: torch.Tensor, sparsity: float, pattern: Pattern,
                 blocksize: int = 128, mask_blocksize: int = 128, percdamp: float = 0.01,
                 score_fn=None, score_window: int = 0) -> None:
    """SparseGPT one linear in place (computed in float32, stored back in the layer's dtype)."""
    n, m = (pattern.n, pattern.m) if pattern.kind == "nm" else (0, 0)
    new_w, _ = sparsegpt_prune(lin.weight.detach().float(), H.float(), sparsity,
                               prune_n=n, prune_m=m, blocksize=blocksize,
                               mask_blocksize=mask_blocksize, percdamp=percdamp,
                               score_fn=score_fn, score_window=score_window)
    lin.weight.copy_(new_w.to(lin.weight.dtype))


def prune_sparsegpt(evaluator, sparsity: float, pattern: Pattern, blocksize: int = 128,
                    mask_blocksize: int = 128, percdamp: float = 0.01, metric=None) -> dict:
    """Prune every prunable linear of ``evaluator.model`` in place with SparseGPT, block by block,
    on the evaluator's calibration samples (its ``CalibConfig``). The caller restores.
    ``metric`` (a tree spec or Node; see ``sparsegpt_metric``) replaces SparseGPT's saliency in
    the mask selection; None keeps SparseGPT exactly as it is."""
    if blocksize < 1 or mask_blocksize < 1 or not percdamp > 0:
        raise ValueError("SparseGPT needs blocksize >= 1, mask_blocksize >= 1 and percdamp > 0")
    tree = None
    if metric is not None:
        from gpsearch.methods.sparsegpt_metric import score_window, tree_score_fn
        from gpsearch.tree import Node, load_tree, terminals_used

        tree = metric if isinstance(metric, Node) else load_tree(str(metric))
        needed = terminals_used(tree)
        grads = evaluator.features.get("G") if "G" in needed else None
        window = score_window(tree, mask_blocksize)
    times = {"hessian_s": 0.0, "solve_s": 0.0}
    shared_groups: list[list[str]] = []

    def process(i, block, inputs):
        linears = block_linears(block)
        t0 = time.perf_counter()
        hess = SharedHessians(linears)
        xs = {n: InputStats(lin.in_features, device=lin.weight.device)
              for n, lin in linears.items()} if tree is not None and needed & {"X", "S"} else None

        def on_input(b, name, x):
            hess.add(b, name, x)
            if xs is not None:
                xs[name].add(x)

        feed_block(block, inputs, linears, on_input)
        t1 = time.perf_counter()
        for name, lin in linears.items():
            fn = None if tree is None else tree_score_fn(
                tree, xs[name].x if xs else None, grads[f"{i}.{name}"] if grads else None)
            prune_linear(lin, hess.hessian(name), ratio_of(sparsity, f"{i}.{name}"), pattern,
                         blocksize, mask_blocksize,
                         percdamp, fn, window if tree is not None else 0)
        times["hessian_s"] += t1 - t0
        times["solve_s"] += time.perf_counter() - t1
        if i == 0:
            shared_groups.extend(hess.groups())

    t = time.perf_counter()
    with torch.no_grad():
        sequential_blocks(evaluator.model, evaluator.features.samples(), evaluator.calib.batch_size,
                          process, progress=evaluator.progress, desc="sparsegpt blocks")
    total = time.perf_counter() - t
    extra = {} if tree is None else {"metric": str(tree)}
    return {"method": "sparsegpt", **extra, "blocksize": blocksize,
            "mask_blocksize": mask_blocksize,
            "percdamp": percdamp, "calibration": evaluator.calib.to_dict(),
            "hessian_groups_block0": shared_groups, "prune_s": total,
            "timings": {**times, "forward_s": total - times["hessian_s"] - times["solve_s"]}}
