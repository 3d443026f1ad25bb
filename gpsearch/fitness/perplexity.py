"""Perplexity with the standard protocol of the pruning literature (Wanda, SparseGPT).

The split's text is tokenized once and cut into ``numel // seqlen`` non-overlapping windows; each
window's loss is the mean shifted-token negative log-likelihood; PPL = exp(sum over windows of
loss * seqlen / (windows * seqlen)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gpsearch.model.blocks import model_device


@torch.no_grad()
def window_losses(model, windows: torch.Tensor, batch_size: int = 4,
                  progress: bool = False, desc: str = "perplexity") -> torch.Tensor:
    """Mean shifted-token NLL of every window (float64, one value per window)."""
    dev = model_device(model)
    losses = []
    starts = range(0, windows.shape[0], batch_size)
    for s in tqdm(starts, desc=desc, disable=not progress, leave=False):
        ids = windows[s:s + batch_size].to(dev)
        logits = model(input_ids=ids, use_cache=False).logits
        shift = logits[:, :-1, :].float()
        target = ids[:, 1:].to(shift.device)  # the last device under a device_map
        nll = F.cross_entropy(shift.reshape(-1, shift.shape[-1]), target.reshape(-1),
                              reduction="none").view(ids.shape[0], -1)
        losses.append(nll.mean(dim=1).double().cpu())
    return torch.cat(losses)


def perplexity_from_losses(losses: torch.Tensor, seqlen: int) -> float:
    """exp(sum(loss_i * seqlen) / (n * seqlen)); inf when the losses overflow or are NaN."""
    total = float((losses * seqlen).sum()) / (losses.numel() * seqlen)
    if not math.isfinite(total):
        return float("inf")
    return math.exp(total) if total < 700 else float("inf")


def perplexity(model, windows: torch.Tensor, batch_size: int = 4, progress: bool = False) -> dict:
    """Perplexity of ``model`` on ``windows`` [n, seqlen], with the counts that produced it."""
    losses = window_losses(model, windows, batch_size, progress)
    n, seqlen = windows.shape
    return {"ppl": perplexity_from_losses(losses, seqlen), "windows": int(n),
            "seqlen": int(seqlen), "tokens": int(n * seqlen)}
