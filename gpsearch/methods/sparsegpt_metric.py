"""Any metric tree as SparseGPT's mask selection (``sparsegpt.metric``).

SparseGPT decides its mask group by group (every ``mask_blocksize`` columns, or every M columns
for N:M) on the weights as already updated by the OBS steps of the earlier columns, ranking by
w^2 / U_jj^2. With a metric tree the ranking is the tree's score instead; the OBS updates are
unchanged. The tree is evaluated on a window of columns j0..j1-1 starting at the group (the
group itself for unstructured; for N:M the M columns, or ``mask_blocksize`` columns when the tree
normalises over its tensor with mms, zsn, div or rown), with the terminals
- ``W`` = |current updated weights| of the window, [rows, j1 - j0];
- ``X`` = Wanda's scaler_row of the linear's inputs in this block's calibration pass (the same
  inputs as SparseGPT's Hessian), ``S`` = sqrt(X), [1, j1 - j0];
- ``H`` = U_jj^2 = [(H_F)^-1]_jj, the diagonal of the damped inverse Hessian restricted to the
  columns not yet visited (F = j..in-1; U is the upper Cholesky factor of the damped H^-1). For
  the first column this is exactly the extended space's H (diag of the damped inverse); it is
  what SparseGPT's saliency divides by, so SparseGPT's own rule is ``pdiv(sqr(W), H)`` (pdiv adds
  1e-8 to the divisor: the same ranking unless two saliencies are within that of each other);
- ``G`` = the dense model's gradient feature of the window (evaluator features), [rows, j1 - j0].
"""

from __future__ import annotations

import torch

from gpsearch.errors import TreeError
from gpsearch.tree import EXTENDED, Node, evaluate, terminals_used

WINDOW_OPS = frozenset({"mms", "zsn", "div", "rown"})  # results depend on other columns


def score_window(tree: Node, mask_blocksize: int) -> int:
    """Columns the tree sees at an N:M decision: ``mask_blocksize`` when it normalises over its
    tensor across columns, else 0 (the group alone: an elementwise tree gives the same scores)."""
    return mask_blocksize if any(n.name in WINDOW_OPS for n in tree.walk()) else 0


def tree_score_fn(tree: Node, x: torch.Tensor | None, g: torch.Tensor | None):
    """The ``score_fn`` of ``sparsegpt_prune`` for ``tree``, with this linear's X [1, in] and
    G [out, in] (either may be None when the tree does not read it)."""
    needed = terminals_used(tree)
    if needed & {"X", "S"} and x is None or "G" in needed and g is None:
        raise ValueError("the tree needs X or G but it was not given")

    def fn(w: torch.Tensor, j0: int, j1: int, u_diag: torch.Tensor) -> torch.Tensor:
        t = {}
        if "W" in needed:
            t["W"] = w.abs().float()
        if "X" in needed:
            t["X"] = x[:, j0:j1].float()
        if "S" in needed:
            t["S"] = x[:, j0:j1].float().sqrt()
        if "H" in needed:
            t["H"] = u_diag.float().square().reshape(1, -1)
        if "G" in needed:
            t["G"] = g[:, j0:j1].float()
        score = evaluate(tree, t, EXTENDED)
        shape = tuple(w.shape)
        if score.dim() == 0 or tuple(torch.broadcast_shapes(score.shape, shape)) != shape:
            raise TreeError(f"metric has shape {tuple(score.shape)}, "
                            f"not the weight window's {shape}")
        if not bool(torch.isfinite(score).all()):
            raise TreeError("metric produced NaN/inf inside SparseGPT")
        return score.expand(shape)

    return fn
