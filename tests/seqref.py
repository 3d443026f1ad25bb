"""Slow, independent reference of the block-sequential flow, for the baseline tests: the inputs of
block i's linears come from a FULL model forward (embeddings through blocks 0..i-1 as they are
now, i.e. already pruned), captured with plain forward hooks; no block input capture, no early
stop, no shared Hessians."""

from __future__ import annotations

import torch

from gpsearch.models import block_linears, decoder_blocks


@torch.no_grad()
def layer_inputs(model, samples: torch.Tensor, index: int, batch_size: int = 4) -> dict:
    """{name in block: inputs [batches * tokens, in] of block ``index``'s linears}."""
    linears = block_linears(decoder_blocks(model)[index])
    got = {n: [] for n in linears}
    handles = [lin.register_forward_hook(lambda m, a, o, n=n: got[n].append(a[0].reshape(-1, a[0].shape[-1])))
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
