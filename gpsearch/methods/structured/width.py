"""Width pruning in the H-GSP / LLM-Pruner family: remove whole attention groups and MLP channels
ranked by an importance computed from ANY metric tree, plus optional removal of whole layers.

- A unit's importance is the sum of the tree's per-weight score over every weight of the unit:
  an MLP channel c owns row c of ``gate_proj`` and ``up_proj`` and column c of ``down_proj``; an
  attention group (one KV head and its query heads, see ``surgery``) owns its rows of
  ``q/k/v_proj`` and its columns of ``o_proj``.
- ``taylor``: the tree ``mul(W, G)``, i.e. |w| * G summed over the group, where G is the
  evaluator's gradient feature (100 * root of the summed squared per-sample gradients of the LM
  loss on the calibration samples): first-order Taylor importance with per-sample gradient
  magnitudes (LLM-Pruner sums the signed gradients over the batch first).
  ``wanda``: the tree ``mul(W, sqrt(X))``, |w| * ||x_j|| summed over the group.
- ``ranking="global"`` ranks units of one kind (attention groups, MLP channels) across all
  layers and removes the lowest ``ratio`` of each kind; every layer keeps at least its best unit
  of each kind. ``ranking="layer"`` removes ``round(ratio * units)`` in every layer (one shape for
  all layers: a plain config). ``ratio`` counts units, not parameters; the record reports both.
- ``n_remove_layers`` first drops the layers with the lowest ShortGPT Block Influence (H-GSP's
  depth pruning by layer importance); the width ranking then covers the remaining layers.
All importances come from the dense model. LLaMA-style models only (``surgery.llama_parts``).
"""

from __future__ import annotations

import torch

from gpsearch.config import WANDA
from gpsearch.errors import UserError
from gpsearch.methods.structured.shortgpt import block_influence, lowest
from gpsearch.methods.structured.surgery import (
    attn_geometry,
    keep_attention_groups,
    keep_mlp_channels,
    llama_parts,
    param_count,
    remove_layers,
)
from gpsearch.model.blocks import decoder_blocks
from gpsearch.tree import Node, load_tree, to_prefix

IMPORTANCE = {"taylor": "mul(W, G)", "wanda": WANDA}


def importance_tree(spec: str | Node) -> Node:
    """``taylor``/``wanda`` (the literature's importances), or any tree spec ``load_tree`` reads."""
    if isinstance(spec, Node):
        return spec
    return load_tree(IMPORTANCE.get(spec, spec))


def unit_importance(score, attn, mlp) -> tuple[torch.Tensor, torch.Tensor]:
    """(importance per attention group, per MLP channel) of one block; ``score(proj_name)`` is the
    per-weight score of that linear ([out, in])."""
    n_kv, q_per, hd = attn_geometry(attn)
    q = score("self_attn.q_proj").double().sum(1).view(n_kv, q_per * hd).sum(1)
    k = score("self_attn.k_proj").double().sum(1).view(n_kv, hd).sum(1)
    v = score("self_attn.v_proj").double().sum(1).view(n_kv, hd).sum(1)
    o = score("self_attn.o_proj").double().sum(0).view(n_kv, q_per * hd).sum(1)
    ch = (score("mlp.gate_proj").double().sum(1) + score("mlp.up_proj").double().sum(1)
          + score("mlp.down_proj").double().sum(0))
    return q + k + v + o, ch


def select_keep(imps: list[torch.Tensor], ratio: float, ranking: str = "global",
                min_keep: int = 1) -> list[torch.Tensor]:
    """Indices to KEEP in each layer. Global: the lowest ``round(ratio * total)`` units over all
    layers go, except each layer's ``min_keep`` best; layer: ``round(ratio * n)`` per layer.
    Ties go to the lower (layer, unit) position."""
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"pruning ratio must be in [0, 1), got {ratio}")
    if ranking == "layer":
        out = []
        for x in imps:
            n = min(int(round(ratio * x.numel())), x.numel() - min_keep)
            drop = torch.sort(x.double(), stable=True).indices[:max(n, 0)]
            out.append(_complement(drop, x.numel()))
        return out
    if ranking != "global":
        raise UserError(f"unknown ranking {ranking!r}; choose global or layer")
    flat = torch.cat([x.double() for x in imps])
    protect = torch.cat([_top_mask(x, min_keep) for x in imps])
    n = min(int(round(ratio * flat.numel())), int((~protect).sum()))
    order = torch.sort(torch.where(protect, float("inf"), flat), stable=True).indices[:n]
    dropped = torch.zeros(flat.numel(), dtype=torch.bool)
    dropped[order] = True
    return [(~d).nonzero().flatten() for d in dropped.split([x.numel() for x in imps])]


def _top_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    m = torch.zeros(x.numel(), dtype=torch.bool)
    m[torch.sort(-x.double(), stable=True).indices[:k]] = True
    return m


def _complement(drop: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[drop] = False
    return keep.nonzero().flatten()


def width_prune(evaluator, importance: str | Node = "taylor", ratio: float = 0.2,
                ranking: str = "global", n_remove_layers: int = 0, attention: bool = True,
                mlp: bool = True, model=None) -> dict:
    """Prune ``model`` (default ``evaluator.model``, whose dense copies are then stale) in place.
    Importances come from the evaluator (its dense weights and features): ``model`` must hold the
    same weights, e.g. a deep copy of the evaluator's model."""
    model, tree = model if model is not None else evaluator.model, importance_tree(importance)
    blocks = decoder_blocks(model)
    parts = [llama_parts(b) for b in blocks]
    before = param_count(model)
    drop_layers, bi = [], None
    if n_remove_layers:
        bi = block_influence(model, evaluator.features.samples(), evaluator.calib.batch_size)
        drop_layers = lowest(bi, n_remove_layers)
    live = [i for i in range(len(blocks)) if i not in drop_layers]
    attn_imp, mlp_imp = [], []
    with torch.no_grad():
        for i in live:
            a, c = unit_importance(lambda p, i=i: evaluator.score(tree, f"{i}.{p}"), *parts[i])
            attn_imp.append(a)
            mlp_imp.append(c)
    attn_keep = select_keep(attn_imp, ratio if attention else 0.0, ranking)
    mlp_keep = select_keep(mlp_imp, ratio if mlp else 0.0, ranking)
    for i, ka, km in zip(live, attn_keep, mlp_keep):
        attn, mlp_mod = parts[i]
        if ka.numel() < attn_imp[live.index(i)].numel():
            keep_attention_groups(attn, ka)
        if km.numel() < mlp_imp[live.index(i)].numel():
            keep_mlp_channels(mlp_mod, km)
    remove_layers(model, drop_layers)
    after = param_count(model)
    return {"method": "width", "importance": to_prefix(tree), "pruning_ratio": ratio,
            "ranking": ranking, "removed_layers": drop_layers,
            "block_influence": None if bi is None else [round(float(v), 6) for v in bi],
            "layers_pruned": live,  # original indices, in the order of the lists below
            "attention_groups_kept": [k.tolist() for k in attn_keep],
            "mlp_channels_kept": [int(k.numel()) for k in mlp_keep],
            "params_before": before, "params_after": after,
            "param_reduction": 1 - after / before, "calibration": evaluator.calib.to_dict()}
