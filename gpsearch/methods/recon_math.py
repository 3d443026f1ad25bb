"""Reconstruction of the kept weights after ANY mask: damped least squares per output row.

For a linear y = W x with calibration inputs X (tokens as rows), a dense weight W_d and a mask
(True = pruned), each row w of the new weight solves

    min_w  ||(w - w_d) X^T||^2 + lam * ||w - w_d||^2     subject to  w_P = 0

(P: the row's pruned columns, K: its kept columns). With Hd = H + lam I, H = (2/n) X^T X (the
scale of H does not matter) and lam = percdamp * mean(diag H), the solution is

    w_K = Hd_KK^-1 (Hd w_d)_K ,   w_P = 0

i.e. the output of the dense weights on the same inputs is the target, and the damping pulls the
kept weights towards their dense values. Every row has its own kept set; two solvers:
- ``cg`` (default): preconditioned conjugate gradients on all rows at once, each iteration one
  matrix product (rows x in) @ Hd restricted to the kept entries, Jacobi preconditioner, started
  from the masked dense weights; it stops when every row's residual norm is below ``tol`` times
  its initial one or after ``max_iter`` iterations (default 20). CG minimises exactly the layer's
  output error over a growing subspace, so every iteration lowers it; on the embedded model's
  Hessians (blocks 0, 10, 20, Wanda's 50% mask) 20 iterations leave at most 0.4% of the possible
  error reduction unrealised, 30 at most 0.2%, 50 at most 0.07%.
- ``cholesky``: the exact solve, one Cholesky of the gathered Hd_KK per row (rows with fewer kept
  columns than the longest are padded with identity rows and zero right-hand sides). Exact but
  LAPACK's batched small factorizations are ~7x slower per flop than a matrix product here.
The mask is never changed: pruned weights are exactly 0, kept weights are the solution. Inputs
that are never active (H_jj = 0) get H_jj = 1 first, as in SparseGPT, so their weights stay at
the dense value (they never affect the output).
"""

from __future__ import annotations

import torch

CHUNK_BYTES = 256 * 2 ** 20  # gathered systems held at once (float32: rows x k x k x 4 bytes)


def damped_hessian(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """H + percdamp * mean(diag H) * I, with dead inputs (H_jj == 0) set to 1 first (a copy)."""
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square, got shape {tuple(H.shape)}")
    if not bool(torch.isfinite(H).all()):
        raise ValueError("H contains NaN or infinite values")
    if not percdamp > 0:
        raise ValueError(f"percdamp must be > 0, got {percdamp}")
    Hd = H.clone()
    diag = Hd.diagonal()
    diag[diag == 0] = 1.0
    diag.add_(percdamp * diag.mean())
    return Hd


SOLVERS = ("cg", "cholesky")


def reconstruct_rows(weight: torch.Tensor, H: torch.Tensor, mask: torch.Tensor,
                     percdamp: float = 0.01, solver: str = "cg", max_iter: int = 20,
                     tol: float = 1e-4, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """The least-squares weights [out, in] for the dense ``weight``, its input Hessian ``H``
    [in, in] and ``mask`` [out, in] (True = pruned). Computed in float32 (float64 when weight or
    H is float64) on weight's device, returned in weight's dtype; inputs are not modified."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose {' or '.join(SOLVERS)}")
    if max_iter < 1 or not tol >= 0:
        raise ValueError("max_iter must be >= 1 and tol >= 0")
    if weight.dim() != 2 or tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"weight [out, in] and mask of the same shape expected, got "
                         f"{tuple(weight.shape)} and {tuple(mask.shape)}")
    rows, cols = weight.shape
    if tuple(H.shape) != (cols, cols):
        raise ValueError(f"H must be [{cols}, {cols}] for weight {tuple(weight.shape)}, "
                         f"got {tuple(H.shape)}")
    dtype = torch.float64 if torch.float64 in (weight.dtype, H.dtype) else torch.float32
    dev = weight.device
    W = weight.detach().to(dev, dtype)
    Hd = damped_hessian(H.detach().to(dev, dtype), percdamp)
    mask = mask.to(dev, torch.bool)
    if solver == "cg":
        return _cg(W, Hd, ~mask, max_iter, tol).to(weight.dtype)
    keep_n = (~mask).sum(dim=1)
    k = int(keep_n.max()) if rows else 0
    out = torch.zeros(rows, cols, dtype=dtype, device=dev)
    if k == 0:
        return out.to(weight.dtype)
    # kept columns of each row first, in increasing column order (stable sort of the mask)
    idx = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices[:, :k]
    rhs_all = W @ Hd  # (Hd w_d) of every row (Hd is symmetric)
    step = max(1, int(chunk_bytes // (k * k * torch.finfo(dtype).bits // 8)))
    eye = torch.eye(k, dtype=dtype, device=dev)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        ix = idx[r0:r1]
        valid = torch.arange(k, device=dev).unsqueeze(0) < keep_n[r0:r1].unsqueeze(1)
        A = Hd[ix.unsqueeze(2), ix.unsqueeze(1)]  # [c, k, k] = Hd_KK per row
        if not bool(valid.all()):
            pair = valid.unsqueeze(2) & valid.unsqueeze(1)
            A = torch.where(pair, A, eye.expand_as(A))
        b = torch.gather(rhs_all[r0:r1], 1, ix) * valid
        sol = _spd_solve(A, b.unsqueeze(2)).squeeze(2)
        out[r0:r1].scatter_(1, ix, sol * valid)
    out.masked_fill_(mask, 0.0)
    return out.to(weight.dtype)


def _cg(W: torch.Tensor, Hd: torch.Tensor, keep: torch.Tensor, max_iter: int,
        tol: float) -> torch.Tensor:
    """Jacobi-preconditioned CG for every row's system Hd_KK w_K = (Hd w_d)_K at once (the
    pruned entries of every vector are kept at zero, so each row solves its own system)."""
    k = keep.to(W.dtype)
    x = W * k
    r = (W - x) @ Hd * k  # b - A x0 with b = (Hd w_d)_K and x0 the masked dense row
    minv = k / Hd.diagonal()
    z = r * minv
    p = z.clone()
    rz = (r * z).sum(1, keepdim=True)
    stop = (tol * r.norm(dim=1, keepdim=True)).square()
    tiny = torch.finfo(W.dtype).tiny
    for _ in range(max_iter):
        if bool((r.square().sum(1, keepdim=True) <= stop).all()):
            break
        ap = p @ Hd * k
        alpha = rz / (p * ap).sum(1, keepdim=True).clamp_min(tiny)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        z = r * minv
        rz_new = (r * z).sum(1, keepdim=True)
        p = z + (rz_new / rz.clamp_min(tiny)) * p
        rz = rz_new
    return x * k


def _spd_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve the batch of symmetric positive definite systems A x = b by Cholesky (float64 when
    a system is not numerically positive definite in float32)."""
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info != 0).any()):
        if A.dtype == torch.float64:
            raise ValueError("a kept-column Hessian is not positive definite even in float64; "
                             "increase percdamp")
        return _spd_solve(A.double(), b.double()).to(A.dtype)
    return torch.cholesky_solve(b, L)


def reconstruction_error(weight_dense: torch.Tensor, weight_new: torch.Tensor,
                         H: torch.Tensor) -> float:
    """tr((W_d - W) H (W_d - W)^T) in float64: the layer's output error on the calibration data
    (up to H's scale)."""
    d = weight_dense.double() - weight_new.double()
    return float(((d @ H.double()) * d).sum())
