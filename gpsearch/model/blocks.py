"""A generic view of a causal LM's decoder blocks and the linears inside them (the only layers
gpsearch ever prunes: never the embeddings nor ``lm_head``)."""

from __future__ import annotations

import torch
from torch import nn

from gpsearch.errors import UserError


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks, found generically: the ModuleList whose length is the
    configured number of hidden layers (LLaMA, Qwen, Mistral, Gemma: model.layers; OPT:
    model.decoder.layers)."""
    n = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for _, m in model.named_modules()
                  if isinstance(m, nn.ModuleList) and len(m) > 0]
    for m in candidates:
        if n is None or len(m) == n:
            return m
    raise UserError(f"cannot find the decoder blocks of {type(model).__name__}")


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    """The nn.Linear layers of one block, by their name inside the block, in module order."""
    return {name: mod for name, mod in block.named_modules() if isinstance(mod, nn.Linear)}


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every linear inside the decoder blocks, keyed '<block index>.<name in block>'."""
    out = {}
    for i, block in enumerate(decoder_blocks(model)):
        for name, lin in block_linears(block).items():
            out[f"{i}.{name}"] = lin
    return out


def base_model(model: nn.Module) -> nn.Module:
    """The model without its LM head (LlamaModel, OPTModel...): enough to run the blocks."""
    prefix = getattr(model, "base_model_prefix", "")
    return getattr(model, prefix, model) if prefix else model


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
