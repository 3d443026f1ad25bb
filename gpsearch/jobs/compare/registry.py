"""The methods ``gpsearch compare`` knows by name (``METHODS``), and the resolution of a
``--methods`` item: a registered name, ``METHOD+lora``, ``METHOD+recon``, ``sparsegpt:TREE``, a
metric tree, or ``baselines/`` recipes."""

from __future__ import annotations

import dataclasses

from gpsearch.errors import UserError
from gpsearch.jobs.compare.method import Method, PruneFn
from gpsearch.jobs.compare.methods import knob_names, lora_variant, register_methods
from gpsearch.jobs.compare.update import (
    RECON_SUFFIX,
    SPARSEGPT_PREFIX,
    recon_variant,
    sparsegpt_tree_method,
)
from gpsearch.methods.magnitude import prune_magnitude
from gpsearch.methods.sparsegpt import prune_sparsegpt
from gpsearch.methods.wanda import prune_wanda
from gpsearch.tree import load_tree, terminals_used, to_prefix

METHODS: dict[str, Method] = {}


def register(name: str, fn: PruneFn, help: str = "", kinds=("unstructured", "nm"),
             prepare=None, cleanup=None, knobs=None) -> Method:
    """Add (or replace) a method of ``gpsearch compare``; ``knobs``: its option names."""
    METHODS[name] = Method(name, fn, help, tuple(kinds), prepare, cleanup,
                           knobs=None if knobs is None else frozenset(knobs))
    return METHODS[name]


register("magnitude", lambda e, s, p, **o: prune_magnitude(e, s, p, scope="matrix", **o),
         "|W|, one threshold per whole matrix (the reference baseline)", knobs=())
register("magnitude-row", lambda e, s, p, **o: prune_magnitude(e, s, p, scope="row", **o),
         "|W|, compared within each output row", knobs=())
register("wanda", prune_wanda, "|W| * sqrt(X) per row, block-sequential", knobs=("features",))
register("wanda-variant", lambda e, s, p, **o: prune_wanda(e, s, p, use_variant=True, **o),
         "Wanda with the per-row alpha search (--use_variant)", kinds=("unstructured",),
         knobs=knob_names(prune_wanda, skip={"use_variant"}))
register("sparsegpt", prune_sparsegpt, "SparseGPT (OBS updates), block-sequential",
         knobs=knob_names(prune_sparsegpt))
register_methods(register)  # iterative, tiers, shortgpt, width-taylor, width-wanda, slimgpt


def tree_method(spec: str, features: str = "sequential") -> Method:
    """A metric tree as a method. A tree that reads no activation statistics (only W and G) gives
    the same masks in both feature modes, so it runs in the cheaper dense mode."""
    tree = load_tree(spec)
    needed = terminals_used(tree)
    mode = features if needed & {"X", "S", "H"} else "dense"

    def fn(evaluator, sparsity, pattern, **_):
        evaluator.prune(tree, sparsity, pattern, mode=mode)
        return {"tree": to_prefix(tree), "features": mode, "timings": dict(evaluator.timings)}

    def prepare(evaluator):
        if "G" in needed:
            evaluator.features.get("G")
        if mode == "dense" and needed & {"X", "S", "H"}:
            evaluator.prepare(tree)

    return Method(spec, fn, f"metric tree {to_prefix(tree)} ({mode} features)", prepare=prepare,
                  tree=to_prefix(tree), knobs=frozenset())


def resolve_method(spec: str, features: str = "sequential") -> Method:
    if spec in METHODS:
        return METHODS[spec]
    if spec.endswith("+lora") and len(spec) > 5:  # any method, then LoRA recovery (zeros kept)
        return lora_variant(resolve_method(spec[:-5], features))
    if spec.endswith(RECON_SUFFIX) and len(spec) > len(RECON_SUFFIX):  # mask + least squares
        return recon_variant(resolve_method(spec[:-len(RECON_SUFFIX)], features), features)
    if spec.startswith(SPARSEGPT_PREFIX):  # a metric tree inside SparseGPT's mask selection
        return sparsegpt_tree_method(spec)
    try:
        return tree_method(spec, features)
    except UserError as e:
        raise UserError(f"unknown method {spec!r}: not one of {', '.join(METHODS)} and not a "
                        f"metric tree ({e})") from None


def method_knobs(name: str):
    """The knob names of a registered method (or METHOD+lora); None when unknown."""
    if name in METHODS:
        return METHODS[name].knobs
    if name.endswith("+lora") and name[:-5] in METHODS:
        return resolve_method(name).knobs
    return None


def resolve_specs(spec: str, features: str = "sequential") -> list[Method]:
    """One --methods item: a method name, a metric tree, or baselines/ recipes (file / folder)."""
    from gpsearch.methods.recipes import expand, is_recipe_spec, load_recipe

    if not is_recipe_spec(spec):
        return [resolve_method(spec, features)]
    out = []
    for path in expand(spec):
        r = load_recipe(path, method_knobs)
        base = resolve_method(r.method, features)
        out.append(dataclasses.replace(base, name=r.name, help=r.description or base.help,
                                       defaults=dict(r.knobs), sparsities=r.sparsities,
                                       recipe=r.path))
    return out
