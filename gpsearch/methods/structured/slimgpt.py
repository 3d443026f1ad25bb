"""SlimGPT-style structured OBS pruning (seed 002): remove whole attention groups (columns of
``o_proj``'s input) and MLP channels (columns of ``down_proj``'s input), choosing the columns with
the smallest Optimal Brain Surgeon error under the Hessian of that layer's input and compensating
the remaining columns with the OBS update; then slice the matching rows of q/k/v and gate/up.

OBS for a set S of input columns of W [out, in], with Hinv the damped inverse Hessian
(H = sum of x x^T over calibration tokens, damping ``percdamp`` * mean diag; SparseGPT's recipe):
    error(S) = trace(W[:, S] (Hinv[S, S])^-1 W[:, S]^T)
    W      <- W - W[:, S] (Hinv[S, S])^-1 Hinv[S, :]           (W[:, S] becomes 0)
    Hinv   <- Hinv - Hinv[:, S] (Hinv[S, S])^-1 Hinv[S, :]     (S removed from the problem)
Greedy in batches: attention groups one at a time; MLP channels in ``rounds`` batches, each the
lowest-error channels given the previous removals (SlimGPT's batched greedy pruning).

Layers are processed in order and each sees the outputs of the already pruned layers before it
(as SparseGPT). Per-layer ratios: ``uniform`` or ``log`` (SlimGPT's incremental pruning ratio:
increasing with depth as log(i + 2), mean ``ratio``); unit counts are allocated by largest
remainder so their total is ``round(ratio * units)`` of each kind. Knobs of the original:
``--num_samples`` / ``--seq_len`` = the shared calibration config, ``--max_samples`` =
``max_tokens`` (cap on the tokens feeding each Hessian). LLaMA-style models only
(``surgery.llama_parts``).
"""

from __future__ import annotations

import math

import torch

from gpsearch.errors import UserError
from gpsearch.methods.structured.surgery import (
    attn_geometry,
    group_index,
    keep_attention_groups,
    keep_mlp_channels,
    llama_parts,
    param_count,
)
from gpsearch.model.blocks import decoder_blocks
from gpsearch.model.blockwise import capture_block_inputs
from gpsearch.model.data import calibration_samples


def damped_inverse(h: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """(H + percdamp * mean(diag H) I)^-1 in float64; dead inputs (H_jj = 0) get H_jj = 1."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(percdamp * torch.diag(h).mean())
    return torch.cholesky_inverse(torch.linalg.cholesky(h))


def group_errors(w: torch.Tensor, hinv: torch.Tensor, groups: torch.Tensor,
                 size: int) -> torch.Tensor:
    """OBS error of removing each group (alone): [len(groups)]."""
    idx = group_index(groups, size).view(-1, size)                   # [g, size]
    if size == 1:
        return w[:, idx[:, 0]].pow(2).sum(0) / hinv.diagonal()[idx[:, 0]]
    hg = hinv[idx[:, :, None], idx[:, None, :]]                      # [g, size, size]
    wg = w[:, idx].permute(1, 0, 2)                                  # [g, out, size]
    # hg is a principal block of the SPD inverse Hessian: a Cholesky solve (no LU pivoting: the
    # batched LU of MKL failed on the embedded model's 192 x 192 attention blocks), with a
    # pseudo-inverse for blocks that lost definiteness to rounding after earlier removals.
    chol, info = torch.linalg.cholesky_ex(hg)
    rhs = wg.transpose(1, 2).contiguous()
    if bool((info == 0).all()):
        sol = torch.cholesky_solve(rhs, chol)
    else:
        sol = torch.linalg.pinv(hg, hermitian=True) @ rhs
    return (sol.transpose(1, 2) * wg).sum(dim=(1, 2))


def obs_remove(w: torch.Tensor, hinv: torch.Tensor, cols: torch.Tensor) -> None:
    """Remove input columns ``cols`` jointly with the OBS update of ``w`` and ``hinv`` (in
    place)."""
    block = hinv[cols][:, cols]
    chol, info = torch.linalg.cholesky_ex(block)  # SPD: no LU (see group_errors)
    inv_ss = torch.cholesky_inverse(chol) if int(info) == 0 else \
        torch.linalg.pinv(block, hermitian=True)
    w.sub_(w[:, cols] @ inv_ss @ hinv[cols, :])
    hinv.sub_(hinv[:, cols] @ inv_ss @ hinv[cols, :])
    w[:, cols] = 0.0


def obs_prune(weight: torch.Tensor, h: torch.Tensor, size: int, n_remove: int, rounds: int,
              percdamp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``n_remove`` groups of ``size`` consecutive input columns in ``rounds`` greedy
    batches. Returns (kept group indices, compensated weight with removed columns zero)."""
    w = weight.detach().double().clone()
    hinv = damped_inverse(h, percdamp)
    n = w.shape[1] // size
    if not 0 <= n_remove < n:
        raise UserError(f"cannot remove {n_remove} of {n} groups")
    alive = torch.ones(n, dtype=torch.bool)
    rounds = max(1, min(rounds, n_remove))
    for r in range(rounds):
        take = n_remove * (r + 1) // rounds - n_remove * r // rounds
        if take == 0:
            continue
        live = alive.nonzero().flatten()
        err = group_errors(w, hinv, live, size)
        chosen = live[torch.sort(err, stable=True).indices[:take]]
        obs_remove(w, hinv, group_index(chosen, size))
        alive[chosen] = False
    return alive.nonzero().flatten(), w.to(weight.dtype)


def layer_ratios(ratio: float, n_layers: int, schedule: str = "uniform") -> list[float]:
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"pruning ratio must be in [0, 1), got {ratio}")
    if schedule == "uniform":
        return [ratio] * n_layers
    if schedule != "log":
        raise UserError(f"unknown ratio schedule {schedule!r}; choose uniform or log")
    w = [math.log(i + 2) for i in range(n_layers)]
    return [min(0.95, ratio * n_layers * x / sum(w)) for x in w]


def allocate(ratios: list[float], units: list[int]) -> list[int]:
    """Units to remove per layer: floor(r_i * n_i) plus the remainder to the largest fractional
    parts (ties: the deeper layer), total round(sum r_i n_i), each layer keeping at least one."""
    want = [r * n for r, n in zip(ratios, units)]
    counts = [min(int(math.floor(x)), n - 1) for x, n in zip(want, units)]
    extra = int(round(sum(want))) - sum(counts)
    order = sorted(range(len(want)), key=lambda i: (-(want[i] - math.floor(want[i])), -i))
    for i in order:
        if extra <= 0:
            break
        if counts[i] < units[i] - 1:
            counts[i] += 1
            extra -= 1
    return counts


def collect_hessian(block, linear, inputs, max_tokens: int | None) -> torch.Tensor:
    """sum x x^T of ``linear``'s inputs while ``block`` runs on ``inputs`` (first max_tokens)."""
    h = torch.zeros(linear.in_features, linear.in_features, dtype=torch.float64,
                    device=linear.weight.device)
    seen = [0]

    def hook(mod, args, out):
        x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
        if max_tokens is not None:
            x = x[:max(0, max_tokens - seen[0])]
        seen[0] += x.shape[0]
        h.addmm_(x.t(), x)

    handle = linear.register_forward_hook(hook)
    try:
        for inp in inputs:
            if max_tokens is not None and seen[0] >= max_tokens:
                break
            inp.run(block)
    finally:
        handle.remove()
    return h


@torch.no_grad()
def slimgpt(lm, calib, ratio: float = 0.2, max_tokens: int | None = None,
            schedule: str = "uniform", rounds: int = 8, percdamp: float = 0.01,
            attention: bool = True, mlp: bool = True) -> dict:
    """Prune ``lm.model`` in place, layer by layer; returns a record."""
    model = lm.model
    blocks = decoder_blocks(model)
    parts = [llama_parts(b) for b in blocks]
    before = param_count(model)
    ratios = layer_ratios(ratio, len(blocks), schedule)
    n_attn = allocate(ratios if attention else [0.0] * len(blocks),
                      [attn_geometry(a)[0] for a, _ in parts])
    n_mlp = allocate(ratios if mlp else [0.0] * len(blocks),
                     [m.down_proj.in_features for _, m in parts])
    was = model.training
    model.eval()
    inputs = capture_block_inputs(model, calibration_samples(lm.tokenizer, calib), calib.batch_size)
    for i, (block, (attn, mlp_mod)) in enumerate(zip(blocks, parts)):
        if n_attn[i]:
            _, q_per, hd = attn_geometry(attn)
            h = collect_hessian(block, attn.o_proj, inputs, max_tokens)
            keep, w = obs_prune(attn.o_proj.weight, h, q_per * hd, n_attn[i], n_attn[i], percdamp)
            attn.o_proj.weight.copy_(w)
            keep_attention_groups(attn, keep)
        if n_mlp[i]:
            h = collect_hessian(block, mlp_mod.down_proj, inputs, max_tokens)
            keep, w = obs_prune(mlp_mod.down_proj.weight, h, 1, n_mlp[i], rounds, percdamp)
            mlp_mod.down_proj.weight.copy_(w)
            keep_mlp_channels(mlp_mod, keep)
        inputs = [inp.with_hidden(inp.run(block)) for inp in inputs]
    model.train(was)
    after = param_count(model)
    return {"method": "slimgpt", "pruning_ratio": ratio, "ratio_schedule": schedule,
            "max_tokens": max_tokens, "rounds": rounds, "percdamp": percdamp,
            "attention_groups_removed": n_attn, "mlp_channels_removed": n_mlp,
            "params_before": before, "params_after": after, "param_reduction": 1 - after / before,
            "calibration": calib.to_dict()}
