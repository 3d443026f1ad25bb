"""SparseGPT's tensor math (Frantar & Alistarh, 2023): tensors in, tensors out.

For a linear layer y = W x with calibration inputs X (one token per row), SparseGPT minimises
the layer-wise reconstruction error ||W X^T - W' X^T||_F^2 over pruned weights W'. Its Hessian is

    H = (2 / n) * sum_t x_t x_t^T          (n = number of calibration samples)

and, working left to right over the input columns with the upper Cholesky factor U of H^-1
(U^T U = H^-1), it zeroes a weight w_q of a row and compensates the columns still to the right
with the optimal-brain-surgeon (OBS) update

    err = w_q / U_qq ,    w_{q:} <- w_{q:} - err * U_{q, q:}

which equals the textbook step w <- w - (w_q / [H_F^-1]_qq) [H_F^-1]_{:,q} with H_F the Hessian
restricted to the columns not yet visited. The scale of H does not matter to the result.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

ScoreFn = Callable[[torch.Tensor, int, int, torch.Tensor], torch.Tensor]


class HessianAccumulator:
    """Running H = (2 / n) sum over all tokens of x x^T, n counting samples (not tokens).

    Update per batch of dn samples: H <- n/(n+dn) H + 2/(n+dn) X^T X, with X the batch's tokens
    as rows. A [batch, tokens, in] input counts as ``batch`` samples, a [tokens, in] input as 1.
    H lives on the device of the first batch it sees (CPU before that)."""

    def __init__(self, columns: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        if columns < 1:
            raise ValueError(f"columns must be >= 1, got {columns}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"accumulate in float32 or float64, not {dtype}")
        self.columns = columns
        self.dtype = dtype
        self.H = torch.zeros(columns, columns, dtype=dtype, device=device)
        self.nsamples = 0

    @torch.no_grad()
    def add_batch(self, inp: torch.Tensor) -> None:
        """Fold in one linear layer input of shape [tokens, in] or [batch, tokens, in]."""
        if inp.dim() == 2:
            dn, x = 1, inp
        elif inp.dim() == 3:
            dn, x = inp.shape[0], inp.reshape(-1, inp.shape[-1])
        else:
            raise ValueError(f"input must be [tokens, in] or [batch, tokens, in], "
                             f"got shape {tuple(inp.shape)}")
        if x.shape[-1] != self.columns:
            raise ValueError(f"input has {x.shape[-1]} features, "
                             f"accumulator expects {self.columns}")
        if dn == 0:
            return
        if self.nsamples == 0 and self.H.device != x.device:
            self.H = self.H.to(x.device)
        x = x.to(self.H.device, self.dtype)
        total = self.nsamples + dn
        self.H.mul_(self.nsamples / total)
        x = x * math.sqrt(2.0 / total)
        self.H.addmm_(x.T, x)
        self.nsamples = total


def inverse_hessian_factor(H: torch.Tensor, percdamp: float = 0.01
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor U of (H + damp I)^-1 and the boolean mask of dead inputs.

    Dead inputs (H_ii == 0, an input that is always zero) get H_ii = 1 first; then
    damp = percdamp * mean(diag H). H is not modified. Raises ValueError when H (damped) or its
    inverse is not positive definite in the working precision."""
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square, got shape {tuple(H.shape)}")
    if not bool(torch.isfinite(H).all()):
        raise ValueError("H contains NaN or infinite values")
    H = H.clone()
    diag = H.diagonal()
    dead = diag == 0
    diag[dead] = 1.0
    diag.add_(percdamp * diag.mean())
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise ValueError(f"the Hessian is not positive definite even after damping "
                         f"(percdamp={percdamp}; Cholesky failed at column {int(info) - 1}); "
                         f"use more calibration data or a larger percdamp")
    Hinv = torch.cholesky_inverse(L)
    U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
    if int(info) != 0:
        raise ValueError(f"the inverse Hessian is not numerically positive definite "
                         f"(percdamp={percdamp}); increase percdamp or compute in float64")
    return U, dead


def _check_args(weight, H, sparsity, prune_n, prune_m, blocksize, mask_blocksize):
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [out, in], got shape {tuple(weight.shape)}")
    cols = weight.shape[1]
    if tuple(H.shape) != (cols, cols):
        raise ValueError(f"H must be [{cols}, {cols}] for weight {tuple(weight.shape)}, "
                         f"got {tuple(H.shape)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if blocksize < 1 or mask_blocksize < 1:
        raise ValueError("blocksize and mask_blocksize must be >= 1")
    if prune_n or prune_m:
        if not 0 < prune_n < prune_m:
            raise ValueError(f"N:M pruning needs 0 < N < M, got {prune_n}:{prune_m}")
        if cols % prune_m:
            raise ValueError(f"in_features={cols} is not a multiple of M={prune_m}")
        if abs(sparsity - prune_n / prune_m) > 1e-9:
            raise ValueError(f"{prune_n}:{prune_m} pruning means sparsity {prune_n / prune_m:g}, "
                             f"got {sparsity}")


def _lowest_in_group(saliency: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest entries of the whole tensor (flattened; stable: ties -> lower index)."""
    flat = torch.zeros(saliency.numel(), dtype=torch.bool, device=saliency.device)
    if k > 0:
        order = torch.sort(saliency.flatten(), stable=True).indices
        flat[order[:k]] = True
    return flat.view_as(saliency)


def _lowest_per_row(saliency: torch.Tensor, n: int) -> torch.Tensor:
    """Mask of the n lowest entries of each row (stable: ties -> lower index)."""
    order = torch.sort(saliency, dim=1, stable=True).indices
    mask = torch.zeros_like(saliency, dtype=torch.bool)
    return mask.scatter_(1, order[:, :n], True)


def sparsegpt_prune(weight: torch.Tensor, H: torch.Tensor, sparsity: float, prune_n: int = 0,
                    prune_m: int = 0, blocksize: int = 128, mask_blocksize: int = 128,
                    percdamp: float = 0.01, score_fn: ScoreFn | None = None,
                    score_window: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one weight [out, in] with its input Hessian H [in, in].

    Returns (new_weight in weight's dtype, mask with True = pruned). Math in float32, or float64
    when weight or H is float64, on weight's device. Inputs are not modified.

    Mask choice (saliency w^2 / U_jj^2, on the weights as already updated by the OBS steps of
    all earlier columns):
    - unstructured: when column j with j % mask_blocksize == 0 is reached, the
      int(sparsity * rows * g) lowest saliencies over the whole rows x g group (g =
      mask_blocksize, or fewer at the right edge) are pruned: one threshold per group, not per row;
    - N:M (prune_n, prune_m > 0): when column j with j % prune_m == 0 is reached, the prune_n
      lowest of columns j..j+prune_m-1 in each row are pruned.
    Columns are processed in lazy batches of ``blocksize``: OBS updates are applied inside the
    batch at once and to the columns after it once per batch (same result, fewer matmuls).

    ``score_fn`` replaces the saliency (None: the code path above, unchanged): at every mask
    decision it gets ``(w, j0, j1, u_diag)`` with ``w`` the current (updated) weights of columns
    j0..j1-1 (signed, [rows, j1 - j0]) and ``u_diag`` = U_jj of those columns, and returns a score
    of w's shape (low = pruned first); only the group's columns of it are used. The window
    starts at the group's first column and spans max(group, ``score_window``) columns (cut at
    the matrix edge), so a score that normalises over its tensor sees more than M columns."""
    _check_args(weight, H, sparsity, prune_n, prune_m, blocksize, mask_blocksize)
    use64 = torch.float64 in (weight.dtype, H.dtype)
    dtype = torch.float64 if use64 else torch.float32
    dev = weight.device
    W = weight.detach().to(dev, dtype).clone()
    U, dead = inverse_hessian_factor(H.detach().to(dev, dtype), percdamp)
    W[:, dead] = 0
    rows, cols = W.shape
    nm = prune_n > 0
    group = prune_m if nm else mask_blocksize
    u_diag = U.diagonal()
    mask = torch.zeros(rows, cols, dtype=torch.bool, device=dev)

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()  # this batch's columns, updated eagerly
        Err1 = torch.zeros_like(W1)  # err of each visited column, for the lazy update
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if j % group == 0:
                g_end = min(j + group, cols)
                if score_fn is None:
                    wg = _current_columns(W, W1, Err1, U, i1, i2, j, g_end)
                    sal = wg.square() / u_diag[j:g_end].square()
                else:
                    w_end = min(j + max(group, score_window), cols)
                    wv = _current_columns(W, W1, Err1, U, i1, i2, j, w_end)
                    sal = score_fn(wv, j, w_end, u_diag[j:w_end])[:, :g_end - j]
                if nm:
                    mask[:, j:g_end] = _lowest_per_row(sal, prune_n)
                else:
                    mask[:, j:g_end] = _lowest_in_group(sal, int(sparsity * sal.numel()))
            w = W1[:, i]
            err = torch.where(mask[:, j], w, torch.zeros_like(w)) / U1[i, i]
            W1[:, i:].addr_(err, U1[i, i:], alpha=-1.0)  # w -= err * U[q, q:]
            Err1[:, i] = err
        W1.masked_fill_(mask[:, i1:i2], 0.0)
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W.to(weight.dtype), mask


def _current_columns(W, W1, Err1, U, i1, i2, j, g_end):
    """Up-to-date weights of columns j..g_end-1 while inside the lazy batch [i1, i2): columns in
    the batch come from W1; columns past it still owe the batch's pending update Err1 @ U."""
    inside = W1[:, j - i1:min(g_end, i2) - i1]
    if g_end <= i2:
        return inside
    outside = W[:, i2:g_end] - Err1 @ U[i1:i2, i2:g_end]
    return torch.cat([inside, outside], dim=1)


def layer_reconstruction_error(W: torch.Tensor, W_new: torch.Tensor, X: torch.Tensor) -> float:
    """||W X^T - W_new X^T||_F^2 in float64, X of shape [tokens, in] or [batch, tokens, in]."""
    X = X.reshape(-1, X.shape[-1]).double()
    diff = W.double() - W_new.double()
    return float((diff @ X.T).square().sum())
