"""Least-squares reconstruction after any mask: both solvers equal an independent damped
least-squares solve (torch.linalg.lstsq on the augmented system), the mask never changes."""

import pytest
import torch

from gpsearch.methods.recon_math import damped_hessian, reconstruct_rows, reconstruction_error


def _toy(rows=12, cols=40, tokens=300, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(cols, generator=g, dtype=dtype) * 3 + 0.1  # unequal channel scales
    latent = torch.randn(tokens, 6, generator=g, dtype=dtype)  # correlated inputs (as in LLMs),
    mix = torch.randn(6, cols, generator=g, dtype=dtype)       # so kept weights can compensate
    x = (latent @ mix + 0.3 * torch.randn(tokens, cols, generator=g, dtype=dtype)) * scale
    w = torch.randn(rows, cols, generator=g, dtype=dtype)
    return x, w, 2.0 * x.T @ x / 7  # H = (2/n) X^T X with n = 7 "samples"


def _lstsq_rows(x, w, mask, H, percdamp):
    """Row by row: min ||X_K w_K - X w_d||^2 * (2/n) + lam ||w_K - w_d,K||^2 - lam ||w_d,P||^2
    as one least-squares problem (the last term is a constant), w_P = 0."""
    lam = percdamp * H.diagonal().mean()
    out = torch.zeros_like(w)
    c = (2.0 / 7) ** 0.5
    for r in range(w.shape[0]):
        K = ~mask[r]
        A = torch.cat([c * x[:, K], lam.sqrt() * torch.eye(w.shape[1], dtype=w.dtype)[:, K]])
        y = torch.cat([c * x @ w[r], lam.sqrt() * w[r]])
        out[r, K] = torch.linalg.lstsq(A, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return out


def _masks(w):
    g = torch.Generator().manual_seed(1)
    rows, cols = w.shape
    per_row = torch.rand(rows, cols, generator=g).argsort(1) < cols // 2
    matrix = torch.rand(rows, cols, generator=g) < torch.linspace(0.1, 0.9, rows).unsqueeze(1)
    nm = (torch.rand(rows, cols // 4, 4, generator=g).argsort(-1) < 2).reshape(rows, cols)
    return {"per_row": per_row, "matrix": matrix, "2:4": nm}


@pytest.mark.parametrize("kind", ["per_row", "matrix", "2:4"])
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_equals_independent_lstsq_and_mask_unchanged(kind, solver):
    x, w, H = _toy()
    mask = _masks(w)[kind]
    expect = _lstsq_rows(x, w, mask, H, 0.01)
    got = reconstruct_rows(w, H, mask, percdamp=0.01, solver=solver, max_iter=200, tol=1e-13)
    assert torch.allclose(got, expect, atol=1e-8, rtol=1e-8), (got - expect).abs().max()
    assert bool((got[mask] == 0).all())  # pruned: exactly zero
    assert bool((got[~mask] != 0).all())  # kept: the solution (never exactly zero here)
    assert not torch.allclose(got[~mask], w[~mask])  # ... and really updated


def test_float32_close_and_error_below_masked_dense():
    x, w, H = _toy(rows=32, cols=64, dtype=torch.float32)
    mask = _masks(w)["per_row"]
    exact = reconstruct_rows(w.double(), H.double(), mask, solver="cholesky")
    for solver in ("cholesky", "cg"):
        got = reconstruct_rows(w, H, mask, solver=solver, max_iter=100, tol=0)
        assert got.dtype == torch.float32
        assert torch.allclose(got.double(), exact, atol=2e-4, rtol=1e-3), solver
    masked = w * ~mask
    assert reconstruction_error(w, exact, H) < 0.8 * reconstruction_error(w, masked, H)


def test_cg_error_falls_with_iterations():
    x, w, H = _toy(rows=16, cols=64)
    mask = _masks(w)["2:4"]
    Hd = damped_hessian(H)  # CG lowers the damped objective at every iteration
    errs = [reconstruction_error(w, reconstruct_rows(w, H, mask, max_iter=i, tol=0), Hd)
            for i in (1, 2, 5, 20, 60)]
    masked = reconstruction_error(w, w * ~mask, Hd)
    assert masked > errs[0] and all(a >= b - 1e-9 for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 0.5 * errs[0]


def test_dead_inputs_keep_dense_value_and_inputs_untouched():
    x, w, H = _toy()
    x[:, 5] = 0
    H = 2.0 * x.T @ x / 7
    mask = _masks(w)["per_row"]
    mask[:, 5] = False
    w0, H0, m0 = w.clone(), H.clone(), mask.clone()
    got = reconstruct_rows(w, H, mask, solver="cholesky")
    assert torch.allclose(got[:, 5], w[:, 5])
    assert torch.equal(w, w0) and torch.equal(H, H0) and torch.equal(mask, m0)


def test_fully_pruned_and_fully_kept_rows():
    x, w, H = _toy(rows=4)
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[0] = True  # a fully pruned row
    for solver in ("cholesky", "cg"):
        got = reconstruct_rows(w, H, mask, solver=solver, max_iter=300, tol=0)
        assert bool((got[0] == 0).all())
        assert torch.allclose(got[1:], w[1:], atol=1e-6)  # nothing pruned: the dense row


def test_damped_hessian_and_argument_checks():
    H = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    Hd = damped_hessian(H, 0.5)
    assert torch.allclose(Hd, torch.tensor([[2.75, 0.0], [0.0, 1.75]]))  # dead 0 -> 1, + 0.5*1.5
    w = torch.ones(2, 2)
    with pytest.raises(ValueError):
        reconstruct_rows(w, H, torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError):
        reconstruct_rows(w, torch.eye(3), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError):
        reconstruct_rows(w, H, torch.zeros(2, 2, dtype=torch.bool), solver="qr")
    with pytest.raises(ValueError):
        damped_hessian(H, 0.0)
