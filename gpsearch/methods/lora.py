"""LoRA recovery fine-tuning of a pruned model, and a merge that keeps every pruned weight zero.

Adapters (peft; r 8, alpha 16, dropout 0.05 by default, as Pruner-Zero's recipe) go on exactly the
linears inside the decoder blocks (full module names, never ``lm_head``), trained with the causal
LM loss on the calibration split's token stream (``baselines.finetune``: non-overlapping blocks,
seeded shuffles; only the adapter weights are trainable). Merging W + (alpha/r) B A naively fills
the pruned positions with non-zero values and lowers sparsity (a known complaint of users of
these systems); ``masked_merge`` merges and then re-applies the pruning mask recorded before
training (W == 0), so the merged model has exactly the zeros of the pruned one. Works for any model
whose block linears are ``nn.Linear`` (LLaMA, OPT, structurally pruned models).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from gpsearch.errors import UserError
from gpsearch.methods.finetune import FinetuneConfig, finetune, training_blocks
from gpsearch.model.blocks import prunable_linears


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 1e-4
    epochs: int = 1
    max_steps: int = 200  # per epoch
    batch_size: int = 4
    seqlen: int = 256
    seed: int = 42
    data: str = "wiki"

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise UserError("LoRA needs r >= 1, alpha > 0 and dropout in [0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def block_linear_names(model) -> list[str]:
    """Full module names of the linears inside the decoder blocks (the LoRA targets)."""
    ids = {id(m) for m in prunable_linears(model).values()}
    return [n for n, m in model.named_modules() if id(m) in ids]


def add_adapters(model, s: LoraSettings):
    """Wrap ``model`` with fresh LoRA adapters on the block linears (in place; returns the peft
    model)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, bias="none",
                     target_modules=block_linear_names(model), task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def naive_merge_zeros(peft_model) -> tuple[int, int]:
    """(zeros, total) over the adapted linears if W + delta were merged without the mask."""
    from peft.tuners.lora import LoraLayer

    zeros = total = 0
    with torch.no_grad():
        for mod in peft_model.modules():
            if isinstance(mod, LoraLayer) and mod.active_adapters:
                w = mod.get_base_layer().weight
                merged = w + sum(mod.get_delta_weight(a) for a in mod.active_adapters)
                zeros, total = zeros + int((merged == 0).sum()), total + merged.numel()
    return zeros, total


@torch.no_grad()
def masked_merge(peft_model, masks: dict[str, torch.Tensor]):
    """Merge the adapters into the base weights, then zero every weight of ``masks`` (True =
    pruned, keyed like ``prunable_linears``). Returns the plain base model."""
    model = peft_model.merge_and_unload()
    linears = prunable_linears(model)
    for name, mask in masks.items():
        linears[name].weight.masked_fill_(mask, 0.0)
    return model


def sparsity(model) -> float:
    lin = prunable_linears(model).values()
    return sum(int((m.weight == 0).sum()) for m in lin) / sum(m.weight.numel() for m in lin)


def lora_recover(model, tokenizer, s: LoraSettings, measure=None, progress: bool = False) -> tuple:
    """Train LoRA adapters on a pruned ``model`` and merge them keeping its zeros.
    ``measure(model) -> perplexity`` (optional) is called before, with adapters, after the merge.
    Returns (merged model, record)."""
    t0 = time.perf_counter()
    masks = {n: m.weight.detach() == 0 for n, m in prunable_linears(model).items()}
    rec = {"lora": s.to_dict(), "sparsity_before": sparsity(model)}
    if measure:
        rec["ppl_before"] = measure(model)
    peft_model = add_adapters(model, s)
    rec["trainable_params"] = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    ft = FinetuneConfig(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs, max_steps=s.max_steps,
                        seqlen=s.seqlen, seed=s.seed, data=s.data)
    rec["train"] = finetune(peft_model, {}, {}, training_blocks(tokenizer, s.data, s.seqlen), ft,
                            progress=progress, desc="LoRA")
    peft_model.eval()
    if measure:
        rec["ppl_adapters"] = measure(peft_model)
    z, t = naive_merge_zeros(peft_model)
    rec["naive_merge_sparsity_of_adapted"] = z / t if t else None
    merged = masked_merge(peft_model, masks)
    merged.eval()
    rec["sparsity_after"] = sparsity(merged)
    if measure:
        rec["ppl_after"] = measure(merged)
    rec["seconds"] = time.perf_counter() - t0
    return merged, rec
