"""Physical surgery on decoder models: slice attention groups and MLP channels, drop whole layers,
fix the config so the smaller model runs, saves and reloads.

Supported: LLaMA-style blocks (``self_attn.{q,k,v,o}_proj`` + ``mlp.{gate,up,down}_proj``; LLaMA,
SmolLM2, Mistral, Qwen2 and friends) for width pruning; any family whose decoder blocks
``models.decoder_blocks`` finds (LLaMA, OPT, ...) for layer removal.

Attention is pruned in whole KV groups: a group is one key/value head together with every query
head that shares it (for multi-head attention a group is a single head). This keeps GQA's "same
number of query heads per KV head" invariant, so ``num_key_value_groups`` never changes.
When every layer keeps the same shapes the config's ``num_attention_heads``,
``num_key_value_heads``, ``intermediate_size`` and ``head_dim`` are updated and the model reloads
with a plain ``from_pretrained``; otherwise the per-linear shapes go into the config together with
``hf_remote.py`` and it reloads with ``from_pretrained(dir, trust_remote_code=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from gpsearch.errors import UserError
from gpsearch.model.blocks import decoder_blocks
from gpsearch.model.save import save_pruned

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
REMOTE_FILE = "gpsearch_pruned_modeling"


def llama_parts(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(self_attn, mlp) of a LLaMA-style block; UserError for other families (OPT...)."""
    attn, mlp = getattr(block, "self_attn", None), getattr(block, "mlp", None)
    if (attn is None or mlp is None
            or not all(isinstance(getattr(attn, n, None), nn.Linear) for n in ATTN)
            or not all(isinstance(getattr(mlp, n, None), nn.Linear) for n in MLP)):
        raise UserError(f"width pruning needs LLaMA-style blocks (self_attn.q/k/v/o_proj and "
                        f"mlp.gate/up/down_proj); {type(block).__name__} is not one (OPT is "
                        f"supported by layer removal only)")
    return attn, mlp


def attn_geometry(attn: nn.Module) -> tuple[int, int, int]:
    """(KV groups, query heads per group, head_dim) of a LLaMA-style attention module."""
    hd = int(attn.head_dim)
    n_kv = attn.k_proj.out_features // hd
    return n_kv, attn.q_proj.out_features // hd // n_kv, hd


def group_index(groups: torch.Tensor, size: int) -> torch.Tensor:
    """Row/column indices of whole groups of ``size`` consecutive channels."""
    return (groups.view(-1, 1) * size + torch.arange(size).view(1, -1)).reshape(-1)


def slice_linear(lin: nn.Linear, out_keep: torch.Tensor | None = None,
                 in_keep: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding only the kept output rows / input columns (bias follows the rows)."""
    w = lin.weight.detach()
    if out_keep is not None:
        w = w[out_keep.to(w.device)]
    if in_keep is not None:
        w = w[:, in_keep.to(w.device)]
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, dtype=w.dtype,
                    device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            b = lin.bias.detach()
            new.bias.copy_(b[out_keep.to(b.device)] if out_keep is not None else b)
    new.weight.requires_grad_(lin.weight.requires_grad)
    return new


def keep_attention_groups(attn: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the KV groups ``keep`` (sorted indices) of a LLaMA-style attention module."""
    n_kv, q_per, hd = attn_geometry(attn)
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    if keep.numel() == 0:
        raise UserError("cannot remove every attention group of a layer")
    q_idx, kv_idx = group_index(keep, q_per * hd), group_index(keep, hd)
    attn.q_proj = slice_linear(attn.q_proj, out_keep=q_idx)
    attn.k_proj = slice_linear(attn.k_proj, out_keep=kv_idx)
    attn.v_proj = slice_linear(attn.v_proj, out_keep=kv_idx)
    attn.o_proj = slice_linear(attn.o_proj, in_keep=q_idx)
    if hasattr(attn, "num_heads"):
        attn.num_heads = keep.numel() * q_per
    if hasattr(attn, "num_key_value_heads"):
        attn.num_key_value_heads = keep.numel()


def keep_mlp_channels(mlp: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the intermediate channels ``keep`` of a gated MLP."""
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    if keep.numel() == 0:
        raise UserError("cannot remove every MLP channel of a layer")
    mlp.gate_proj = slice_linear(mlp.gate_proj, out_keep=keep)
    mlp.up_proj = slice_linear(mlp.up_proj, out_keep=keep)
    mlp.down_proj = slice_linear(mlp.down_proj, in_keep=keep)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = keep.numel()


def remove_layers(model: nn.Module, drop) -> list[int]:
    """Delete the decoder layers ``drop``; renumber every ``layer_idx`` and fix the config."""
    blocks = decoder_blocks(model)
    drop = sorted({int(i) for i in drop})
    if any(not 0 <= i < len(blocks) for i in drop):
        raise UserError(f"layer indices {drop} out of range (model has {len(blocks)} layers)")
    if len(drop) >= len(blocks):
        raise UserError(f"cannot remove {len(drop)} of {len(blocks)} layers")
    kept = [b for i, b in enumerate(blocks) if i not in drop]
    for new_idx, block in enumerate(kept):
        for mod in block.modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new_idx
    cfg = model.config
    types = getattr(cfg, "layer_types", None)
    if isinstance(types, list) and len(types) == len(blocks):
        cfg.layer_types = [t for i, t in enumerate(types) if i not in drop]
    for i in reversed(drop):
        del blocks[i]  # ModuleList renumbers its children
    cfg.num_hidden_layers = len(kept)
    return drop


def param_count(model: nn.Module) -> int:
    """Parameters of the model (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def _block_shapes(model: nn.Module) -> list[dict]:
    return [{n: tuple(m.weight.shape) for n, m in b.named_modules() if isinstance(m, nn.Linear)}
            for b in decoder_blocks(model)]


def finalize_config(model: nn.Module) -> bool:
    """Write the new shapes into the config. Returns True when every layer has the same shapes
    (plain config), False when per-linear shapes were recorded for ``hf_remote.py``."""
    cfg = model.config
    for key in ("gpsearch_linear_shapes", "auto_map"):
        if hasattr(cfg, key):
            delattr(cfg, key)
    shapes = _block_shapes(model)
    blocks = decoder_blocks(model)
    try:
        attn, mlp = llama_parts(blocks[0])
    except UserError:
        return True  # only layers removed: shapes unchanged
    if all(s == shapes[0] for s in shapes):
        n_kv, q_per, hd = attn_geometry(attn)
        cfg.head_dim, cfg.num_key_value_heads = hd, n_kv
        cfg.num_attention_heads, cfg.intermediate_size = n_kv * q_per, mlp.down_proj.in_features
        return True
    names = {id(m): n for n, m in model.named_modules()}
    cfg.head_dim = int(attn.head_dim)
    cfg.gpsearch_linear_shapes = {
        names[id(m)]: [m.out_features, m.in_features, m.bias is not None]
        for b in blocks for m in b.modules() if isinstance(m, nn.Linear)}
    cfg.auto_map = {"AutoModelForCausalLM": f"{REMOTE_FILE}.GpsearchPrunedForCausalLM"}
    return False


def save_structured(lm, out_dir: str | Path, record: dict) -> Path:
    """Save a structurally pruned model so that ``from_pretrained`` reloads it (see module doc)."""
    uniform = finalize_config(lm.model)
    out = save_pruned(lm, out_dir, {**record, "trust_remote_code": not uniform})
    if not uniform:
        src = (Path(__file__).with_name("hf_remote.py")).read_text()
        base = type(lm.model).__name__
        src = re.sub(r'^BASE = ".*"$', f'BASE = "{base}"', src, count=1, flags=re.M)
        (out / f"{REMOTE_FILE}.py").write_text(src)
    return out
