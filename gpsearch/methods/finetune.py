"""Masked fine-tuning: recover a pruned model's quality while its pruned weights stay exactly zero.

Training data: the calibration split's token stream (never the validation/test text), cut into
non-overlapping ``seqlen`` blocks, shuffled per epoch with a seeded generator. AdamW on every
trainable parameter, causal LM loss. The masks are held two ways: a gradient hook zeroes the
gradient of every pruned weight (so AdamW's moments stay zero there), and the mask is re-applied
after every optimizer step (so weight decay or numerical noise can never revive a weight).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from gpsearch.errors import UserError
from gpsearch.model.blocks import model_device
from gpsearch.model.data import token_stream


@dataclass(frozen=True)
class FinetuneConfig:
    """Knobs of one fine-tuning run (seed 000's defaults)."""

    lr: float = 1e-5
    batch_size: int = 8
    epochs: int = 3
    max_steps: int = 2500  # per epoch
    seqlen: int = 256
    seed: int = 42
    weight_decay: float = 0.0
    data: str = "wiki"

    def __post_init__(self):
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 0 or self.max_steps < 1 \
                or self.seqlen < 2:
            raise UserError("fine-tuning needs lr > 0, batch_size >= 1, epochs >= 0, "
                            "max_steps >= 1 and seqlen >= 2")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def training_blocks(tokenizer, data: str, seqlen: int) -> torch.Tensor:
    """The calibration split's token stream cut into ``numel // seqlen`` blocks [n, seqlen]."""
    stream = token_stream(tokenizer, data, "calibration")
    n = stream.numel() // seqlen
    if n == 0:
        raise UserError(f"the calibration split of {data!r} has fewer than {seqlen} tokens")
    return stream[: n * seqlen].view(n, seqlen)


def zero_masks(linears: dict[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """{name: weight == 0} — the current pruning masks of the linears (True = pruned)."""
    return {n: lin.weight.detach() == 0 for n, lin in linears.items()}


@torch.no_grad()
def apply_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        linears[name].weight.masked_fill_(mask, 0.0)


def hold_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> list:
    """Gradient hooks that zero the gradient of every pruned weight; returns the handles."""
    return [linears[name].weight.register_hook(lambda g, m=mask: g.masked_fill(m, 0.0))
            for name, mask in masks.items()]


def finetune(model: nn.Module, linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor],
             blocks: torch.Tensor, cfg: FinetuneConfig, epochs: int | None = None,
             progress: bool = True, desc: str = "fine-tune") -> dict:
    """Fine-tune ``model`` in place on ``blocks`` [n, seqlen] holding ``masks`` (True = pruned
    weight of ``linears[name]``). Returns steps, mean loss per epoch, first and last loss."""
    epochs = cfg.epochs if epochs is None else epochs
    dev = model_device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    apply_masks(linears, masks)
    if epochs == 0 or not params:
        return {"steps": 0, "epochs": 0, "epoch_loss": [], "first_loss": None, "last_loss": None}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    per_epoch = min(cfg.max_steps, math.ceil(blocks.shape[0] / cfg.batch_size))
    handles = hold_masks(linears, masks)
    steps, epoch_loss, first, last = 0, [], None, None
    bar = tqdm(total=epochs * per_epoch, desc=desc, disable=not progress, leave=False)
    devices = [dev] if dev.type == "cuda" else []
    try:
        model.train()
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(cfg.seed)  # dropout: same run, same numbers (resume relies on it)
            for _ in range(epochs):
                order = torch.randperm(blocks.shape[0], generator=gen)
                total = 0.0
                for s in range(per_epoch):
                    ids = blocks[order[s * cfg.batch_size:(s + 1) * cfg.batch_size]].to(dev)
                    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                    if not torch.isfinite(loss.detach()):
                        raise RuntimeError(f"fine-tuning loss is {float(loss)} at step {steps}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    apply_masks(linears, masks)
                    value = float(loss.detach())
                    first = value if first is None else first
                    last, total, steps = value, total + value, steps + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}")
                epoch_loss.append(total / per_epoch)
    finally:
        bar.close()
        for h in handles:
            h.remove()
        opt.zero_grad(set_to_none=True)
        model.train(was_training)
    return {"steps": steps, "epochs": epochs, "epoch_loss": epoch_loss, "first_loss": first,
            "last_loss": last}


class Finetuner:
    """``finetune(model, masks, epochs) -> dict`` bound to one tokenizer + config: the callable
    shape other loops (three-tier pruning, iterative pruning) take. ``masks`` are keyed like
    ``prunable_linears(model)``."""

    def __init__(self, tokenizer, cfg: FinetuneConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.blocks = training_blocks(tokenizer, cfg.data, cfg.seqlen)

    def __call__(self, model: nn.Module, masks: dict[str, torch.Tensor], epochs: int | None = None,
                 seed: int | None = None) -> dict:
        from gpsearch.model.blocks import prunable_linears

        cfg = self.cfg if seed is None else dataclasses.replace(self.cfg, seed=seed)
        return finetune(model, prunable_linears(model), masks, self.blocks, cfg, epochs,
                        progress=self.progress)
