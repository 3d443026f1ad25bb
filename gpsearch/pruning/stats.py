"""Per-linear input statistics gathered with forward hooks (pure accumulation math).

- X (Wanda's ``scaler_row``): per input channel j, the mean over calibration samples of the squared
  L2 norm over that sample's tokens of x_j. Shape [1, in].
- Hessian (SparseGPT): H = (2 / n) * sum over samples of X_s^T X_s, kept as a running mean.
  The terminal ``H`` is the diagonal of the damped inverse (H + 0.01 * mean(diag H) * I)^-1.
"""

from __future__ import annotations

import torch
from torch import nn


class InputStats:
    """Running X (and optionally the Hessian) of one linear layer's inputs."""

    def __init__(self, in_features: int, hessian: bool = False, device=None,
                 tokens_per_sample: int | None = None):
        self.n = 0
        self.tokens_per_sample = tokens_per_sample
        self.x = torch.zeros(1, in_features, dtype=torch.float32, device=device)
        self.h = (torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
                  if hessian else None)

    def add(self, inp: torch.Tensor) -> None:
        """Add a batch of inputs [batch, tokens, in], or [tokens, in]: that counts as
        tokens / ``tokens_per_sample`` samples when set and it divides (OPT flattens the batch
        before fc1 / fc2, so their inputs arrive as [batch * seqlen, in]), else as one sample."""
        t = self.tokens_per_sample
        if inp.dim() == 2:
            b = inp.shape[0] // t if t and inp.shape[0] % t == 0 else 1
        else:
            b = inp.shape[0]
        flat = inp.reshape(-1, inp.shape[-1]).float()
        total = self.n + b
        if flat.device != self.x.device:  # --offload: the block ran on the device, stats at home
            self.x.mul_(self.n / total).add_(flat.pow(2).sum(dim=0, keepdim=True).to(self.x.device)
                                             / total)
            if self.h is not None:
                self.h.mul_(self.n / total).add_((flat.t() @ flat).to(self.h.device),
                                                 alpha=2.0 / total)
            self.n = total
            return
        self.x.mul_(self.n / total).add_(flat.pow(2).sum(dim=0, keepdim=True) / total)
        if self.h is not None:
            self.h.mul_(self.n / total).addmm_(flat.t(), flat, alpha=2.0 / total)
        self.n = total

    def inverse_hessian_diag(self, percdamp: float = 0.01) -> torch.Tensor:
        """diag((H + percdamp * mean(diag H) I)^-1) as [1, in]; dead inputs (H_jj = 0) get 1."""
        h = self.h.clone().double()
        dead = torch.diag(h) == 0
        h[dead, dead] = 1.0
        damp = percdamp * torch.mean(torch.diag(h))
        h.diagonal().add_(damp)
        inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.diag(inv).float().unsqueeze(0)


def attach_stats(linears: dict[str, nn.Linear], hessian: bool = False,
                 tokens_per_sample: int | None = None) -> tuple[dict, list]:
    """Forward hooks that feed every linear's input to an InputStats; returns (stats, handles).
    ``tokens_per_sample``: the calibration seqlen (see ``InputStats.add``)."""
    stats, handles = {}, []
    for name, lin in linears.items():
        st = InputStats(lin.in_features, hessian, device=lin.weight.device,
                        tokens_per_sample=tokens_per_sample)
        stats[name] = st
        handles.append(lin.register_forward_hook(
            lambda m, args, out, st=st: st.add(args[0].detach())))
    return stats, handles


def remove_hooks(handles: list) -> None:
    for h in handles:
        h.remove()
