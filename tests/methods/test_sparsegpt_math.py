"""SparseGPT math against an independent, slow, textbook OBS computation on toy layers."""

from __future__ import annotations

import pytest
import torch

from gpsearch.methods.sparsegpt_math import (
    HessianAccumulator,
    inverse_hessian_factor,
    layer_reconstruction_error,
    sparsegpt_prune,
)


def toy(rows=6, cols=24, tokens=200, seed=0, correlated=True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    X = torch.randn(tokens, cols, generator=g, dtype=torch.float64)
    if correlated:
        X = X @ (torch.eye(cols, dtype=torch.float64)
                 + 0.5 * torch.randn(cols, cols, generator=g, dtype=torch.float64))
    return W, X


def hessian(X):
    return 2.0 * X.T @ X / X.shape[0]


def slow_obs(W, H, sparsity, group, n=0, m=0, percdamp=0.01):
    """Textbook sequential OBS, column by column, with an explicit inverse Hessian.

    The inverse kept in ``Hinv`` always equals inv(H[q:, q:]) when column q is visited. The
    saliency of column j is w_j^2 / inv(H[j:, j:])[0, 0], computed here by a direct inverse."""
    W, H = W.double().clone(), H.double().clone()
    d = H.shape[0]
    for i in range(d):
        if H[i, i] == 0:
            H[i, i] = 1.0
            W[:, i] = 0.0
    H += percdamp * torch.diagonal(H).mean() * torch.eye(d, dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    mask = torch.zeros(W.shape, dtype=torch.bool)
    gsize = m if n else group
    for q in range(d):
        if q % gsize == 0:
            cols = list(range(q, min(q + gsize, d)))
            dj = [float(torch.linalg.inv(H[j:, j:])[0, 0]) for j in cols]
            sal = [[float(W[r, j]) ** 2 / dj[c] for c, j in enumerate(cols)]
                   for r in range(W.shape[0])]
            if n:
                for r, row in enumerate(sal):
                    for c in sorted(range(len(cols)), key=lambda c: row[c])[:n]:
                        mask[r, cols[c]] = True
            else:
                flat = [(v, r * len(cols) + c)
                        for r, row in enumerate(sal) for c, v in enumerate(row)]
                for _, idx in sorted(flat)[:int(sparsity * len(flat))]:
                    mask[idx // len(cols), cols[idx % len(cols)]] = True
        for r in range(W.shape[0]):
            if mask[r, q]:
                W[r, q:] -= (W[r, q] / Hinv[0, 0]) * Hinv[:, 0]
                W[r, q] = 0.0
        Hinv = Hinv[1:, 1:] - torch.outer(Hinv[1:, 0], Hinv[0, 1:]) / Hinv[0, 0]
    return W, mask


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_hessian_accumulator_matches_direct_sum():
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 7, 5, generator=g), torch.randn(9, 5, generator=g),
               torch.randn(1, 4, 5, generator=g), torch.randn(5, 2, 5, generator=g)]
    acc32, acc64 = HessianAccumulator(5), HessianAccumulator(5, dtype=torch.float64)
    for b in batches:
        acc32.add_batch(b)
        acc64.add_batch(b)
    n = 3 + 1 + 1 + 5
    tokens = torch.cat([b.reshape(-1, 5) for b in batches]).double()
    direct = 2.0 / n * tokens.T @ tokens
    assert acc32.nsamples == acc64.nsamples == n
    assert acc32.H.dtype == torch.float32
    torch.testing.assert_close(acc64.H, direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(acc32.H.double(), direct, rtol=1e-5, atol=1e-5)


def test_hessian_accumulator_rejects_bad_shapes():
    acc = HessianAccumulator(4)
    with pytest.raises(ValueError):
        acc.add_batch(torch.randn(3, 5))
    with pytest.raises(ValueError):
        acc.add_batch(torch.randn(2, 2, 2, 4))


@pytest.mark.parametrize("blocksize,mask_blocksize,sparsity", [
    (8, 4, 0.5), (8, 12, 0.5), (5, 128, 0.6), (1, 3, 0.3), (128, 128, 0.5)])
def test_unstructured_matches_slow_obs(blocksize, mask_blocksize, sparsity):
    W, X = toy()
    H = hessian(X)
    new_w, mask = sparsegpt_prune(W, H, sparsity, blocksize=blocksize,
                                  mask_blocksize=mask_blocksize)
    ref_w, ref_mask = slow_obs(W, H, sparsity, mask_blocksize)
    assert torch.equal(mask, ref_mask)
    assert rel(new_w, ref_w) < 1e-10
    assert bool((new_w[mask] == 0).all())


@pytest.mark.parametrize("n,m,blocksize", [(2, 4, 8), (2, 4, 6), (4, 8, 8), (4, 8, 5)])
def test_nm_matches_slow_obs(n, m, blocksize):
    W, X = toy(seed=3)
    H = hessian(X)
    new_w, mask = sparsegpt_prune(W, H, n / m, prune_n=n, prune_m=m, blocksize=blocksize)
    ref_w, ref_mask = slow_obs(W, H, n / m, 0, n=n, m=m)
    assert torch.equal(mask, ref_mask)
    assert rel(new_w, ref_w) < 1e-10


def test_float32_close_to_slow_obs():
    W, X = toy(seed=5)
    H = hessian(X)
    new_w, mask = sparsegpt_prune(W.float(), H.float(), 0.5, blocksize=8, mask_blocksize=4)
    assert new_w.dtype == torch.float32
    ref_w, ref_mask = slow_obs(W, H, 0.5, 4)
    assert torch.equal(mask, ref_mask)
    assert rel(new_w, ref_w) < 1e-4


def test_lazy_batch_size_does_not_change_result():
    W, X = toy(rows=10, cols=40, tokens=300, seed=7)
    H = hessian(X)
    a = sparsegpt_prune(W, H, 0.5, blocksize=1, mask_blocksize=16)
    b = sparsegpt_prune(W, H, 0.5, blocksize=128, mask_blocksize=16)
    c = sparsegpt_prune(W, H, 0.5, blocksize=7, mask_blocksize=16)
    assert torch.equal(a[1], b[1]) and torch.equal(a[1], c[1])
    assert rel(a[0], b[0]) < 1e-10 and rel(c[0], b[0]) < 1e-10


def test_exact_count_per_mask_group():
    W, X = toy(rows=16, cols=100, tokens=400, seed=2)
    _, mask = sparsegpt_prune(W.float(), hessian(X).float(), 0.37, blocksize=24,
                              mask_blocksize=32)
    for start in range(0, 100, 32):
        grp = mask[:, start:start + 32]
        assert int(grp.sum()) == int(0.37 * grp.numel())


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_exact_count_per_nm_group(n, m):
    W, X = toy(rows=16, cols=64, tokens=400, seed=4)
    new_w, mask = sparsegpt_prune(W.float(), hessian(X).float(), n / m, prune_n=n, prune_m=m,
                                  blocksize=20)
    assert bool((mask.reshape(16, -1, m).sum(dim=-1) == n).all())
    assert bool((new_w[mask] == 0).all()) and bool((new_w[~mask] != 0).all())


def test_reconstruction_beats_zeroing_and_wanda():
    W, X = toy(rows=32, cols=64, tokens=512, seed=11)
    X = X * torch.linspace(0.2, 3.0, 64, dtype=torch.float64)  # uneven feature scales
    new_w, mask = sparsegpt_prune(W.float(), hessian(X).float(), 0.5)
    err_sgpt = layer_reconstruction_error(W, new_w, X)
    err_same_mask = layer_reconstruction_error(W, W.masked_fill(mask, 0.0), X)
    score = W.abs() * X.norm(dim=0)[None, :]
    wanda_mask = torch.zeros_like(mask).scatter_(
        1, torch.sort(score, dim=1, stable=True).indices[:, :32], True)
    err_wanda = layer_reconstruction_error(W, W.masked_fill(wanda_mask, 0.0), X)
    assert int(mask.sum()) == int(wanda_mask.sum()) == W.numel() // 2
    assert err_sgpt < 0.8 * err_same_mask
    assert err_sgpt < 0.8 * err_wanda


def test_dead_input_columns():
    W, X = toy(rows=8, cols=16, tokens=100, seed=6)
    X[:, 3] = 0.0
    X[:, 10] = 0.0
    acc = HessianAccumulator(16)
    acc.add_batch(X.float().reshape(4, 25, 16))
    new_w, mask = sparsegpt_prune(W.float(), acc.H, 0.25, blocksize=4, mask_blocksize=8)
    assert bool(torch.isfinite(new_w).all())
    assert bool((new_w[:, [3, 10]] == 0).all())
    ref_w, ref_mask = slow_obs(W, acc.H.double(), 0.25, 8)
    assert torch.equal(mask, ref_mask)
    assert rel(new_w, ref_w) < 1e-4


def test_dtype_preserved_and_inputs_untouched():
    W, X = toy(rows=8, cols=32, seed=8)
    Wb, H = W.to(torch.bfloat16), hessian(X).float()
    Wb0, H0 = Wb.clone(), H.clone()
    new_w, mask = sparsegpt_prune(Wb, H, 0.5, blocksize=16, mask_blocksize=16)
    assert new_w.dtype == torch.bfloat16 and mask.dtype == torch.bool
    assert torch.equal(Wb, Wb0) and torch.equal(H, H0)
    assert bool((new_w[mask] == 0).all())


def test_not_positive_definite_raises():
    W = torch.randn(4, 6)
    with pytest.raises(ValueError, match="positive definite"):
        sparsegpt_prune(W, -torch.eye(6), 0.5)
    with pytest.raises(ValueError, match="positive definite"):
        sparsegpt_prune(W, torch.ones(6, 6), 0.5, percdamp=0.0)  # rank 1, no damping
    with pytest.raises(ValueError, match="NaN"):
        sparsegpt_prune(W, torch.full((6, 6), float("nan")), 0.5)


def test_argument_checks():
    W, H = torch.randn(4, 8), torch.eye(8)
    with pytest.raises(ValueError):
        sparsegpt_prune(W, H, 0.6, prune_n=2, prune_m=4)  # N:M fixes the sparsity
    with pytest.raises(ValueError):
        sparsegpt_prune(torch.randn(4, 6), torch.eye(6), 0.5, prune_n=2, prune_m=4)
    with pytest.raises(ValueError):
        sparsegpt_prune(W, torch.eye(7), 0.5)
    with pytest.raises(ValueError):
        sparsegpt_prune(W, H, 1.0)


def test_factor_is_upper_cholesky_of_damped_inverse():
    _, X = toy(cols=10, seed=9)
    H = hessian(X)
    U, dead = inverse_hessian_factor(H, 0.01)
    damped = H + 0.01 * torch.diagonal(H).mean() * torch.eye(10, dtype=H.dtype)
    assert not bool(dead.any())
    assert torch.equal(U, torch.triu(U))
    torch.testing.assert_close(U.T @ U, torch.linalg.inv(damped))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    W, X = toy(rows=64, cols=256, tokens=1024, seed=10)
    H = hessian(X).float()
    cpu_w, cpu_mask = sparsegpt_prune(W.float(), H, 0.5, blocksize=64, mask_blocksize=128)
    gpu_w, gpu_mask = sparsegpt_prune(W.float().cuda(), H.cuda(), 0.5, blocksize=64,
                                      mask_blocksize=128)
    assert gpu_w.device.type == "cuda" and gpu_mask.device.type == "cuda"
    assert (gpu_mask.cpu() != cpu_mask).float().mean() < 0.01
    assert rel(gpu_w.cpu(), cpu_w) < 1e-2
