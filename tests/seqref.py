"""Slow, independent reference of the block-sequential flow, for the baseline tests: the inputs of
block i's linears come from a FULL model forward (embeddings through blocks 0..i-1 as they are
now, i.e. already pruned), captured with plain forward hooks; no block input capture, no early
stop, no shared Hessians."""

from __future__ import annotations

import torch

from gpsearch.model.blocks import block_linears, decoder_blocks


@torch.no_grad()
def layer_inputs(model, samples: torch.Tensor, index: int, batch_size: int = 4) -> dict:
    """{name in block: inputs [batches * tokens, in] of block ``index``'s linears}."""
    linears = block_linears(decoder_blocks(model)[index])
    got = {n: [] for n in linears}
    handles = [lin.register_forward_hook(
                   lambda m, a, o, n=n: got[n].append(a[0].reshape(-1, a[0].shape[-1])))
               for n, lin in linears.items()]
    try:
        for s in range(0, samples.shape[0], batch_size):
            model(input_ids=samples[s:s + batch_size], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in got.items()}


def sequential_reference(model, samples: torch.Tensor, prune_block, batch_size: int = 4) -> None:
    """For each block in order: ``prune_block(i, linears, inputs)`` with inputs as above."""
    for i, block in enumerate(decoder_blocks(model)):
        prune_block(i, block_linears(block), layer_inputs(model, samples, i, batch_size))


def scaler_row(x: torch.Tensor, nsamples: int) -> torch.Tensor:
    """Wanda's X from raw inputs [tokens, in]: sum of squares over tokens / number of samples."""
    return (x.double().square().sum(0, keepdim=True) / nsamples).float()


def recon_error(w: torch.Tensor, w_new: torch.Tensor, x: torch.Tensor) -> float:
    """||W X^T - W' X^T||_F in float64."""
    return float(((w.detach().double() - w_new.detach().double()) @ x.double().T).norm())


def damped_inverse_hessian_diag(x: torch.Tensor, nsamples: int, percdamp: float = 0.01):
    """The terminal H from raw inputs [tokens, in], in float64 with numpy's inverse:
    H_cal = (2 / nsamples) X^T X; a never-active input's diagonal entry becomes 1;
    diag((H_cal + percdamp * mean(diag H_cal) I)^-1) as [1, in]."""
    import numpy as np

    xs = x.detach().double().numpy()
    h = 2.0 / nsamples * xs.T @ xs
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h += percdamp * np.mean(np.diag(h)) * np.eye(h.shape[0])
    return torch.from_numpy(np.diag(np.linalg.inv(h)).copy()).float().unsqueeze(0)


def kill_inputs(model) -> dict:
    """Make some linear inputs dead (always zero): channel 3 of block 0's attention inputs (its
    input norm's weight and bias) and channel 5 of block 1's MLP output projection (the gate /
    fc1 row and bias). Returns {linear name: dead input channel}."""
    blocks = decoder_blocks(model)
    with torch.no_grad():
        if hasattr(blocks[0], "input_layernorm"):  # LLaMA
            blocks[0].input_layernorm.weight[3] = 0.0
            blocks[1].mlp.gate_proj.weight[5] = 0.0
            return {"0.self_attn.q_proj": 3, "1.mlp.down_proj": 5}
        blocks[0].self_attn_layer_norm.weight[3] = 0.0  # OPT
        blocks[0].self_attn_layer_norm.bias[3] = 0.0
        blocks[1].fc1.weight[5] = 0.0
        blocks[1].fc1.bias[5] = 0.0
        return {"0.self_attn.q_proj": 3, "1.fc2": 5}
