"""Weight-update methods of ``gpsearch compare``: ``METHOD+recon`` and ``sparsegpt:TREE``.

- ``METHOD+recon`` (any mask-only method: magnitude, magnitude-row, wanda, wanda-variant, any
  metric tree, sparsegpt's mask too): the remaining weights of every linear are reconstructed
  by damped least squares under the method's mask, block-sequentially (``baselines.recon``).
  Trees and wanda: mask and reconstruction in one flow (each block's mask from the pass that
  gives its Hessians, so later blocks' statistics come from reconstructed blocks); other
  methods prune first and are reconstructed on their zeros. Options prefixed ``recon_``
  (``recon_max_iter``, ``recon_solver``, ``recon_percdamp``, ``recon_tol``) go to the
  reconstruction, the rest to the method. Methods that change shapes or fine-tune (structured
  ones, tiers, ``+lora``) are refused.
- ``sparsegpt:TREE`` (TREE: a file, a name in trees/ or a prefix expression): SparseGPT with the
  tree ranking its adaptive mask selection (``baselines.sparsegpt_metric``); the same as
  ``sparsegpt`` with ``--option sparsegpt.metric=TREE``. Knobs: blocksize, mask_blocksize,
  percdamp.
``weight_update_methods`` / ``weight_update_rows`` give a search report both rows per tree.
"""

from __future__ import annotations

from gpsearch.config import WANDA
from gpsearch.errors import UserError

NOT_MASK_ONLY = frozenset({"tiers", "shortgpt", "width-taylor", "width-wanda", "slimgpt"})
SPARSEGPT_PREFIX = "sparsegpt:"
RECON_SUFFIX = "+recon"


TREE_ALIASES = {"wanda": "wanda"}  # registered methods that are exactly a tree (row scope)


def recon_variant(base, features: str = "sequential"):
    """``<base>+recon``: the base method's mask, then least-squares reconstruction. Metric trees
    (and wanda) take the one-flow path (``tree_then_reconstruct``: the block's mask from the
    same pass as its Hessians); every other mask-only method prunes first, then is
    reconstructed on its zeros (``prune_then_reconstruct``)."""
    from gpsearch.jobs.compare.method import Method

    if base.name in NOT_MASK_ONLY or base.name.endswith(("+lora", RECON_SUFFIX)):
        raise UserError(f"{base.name}{RECON_SUFFIX}: reconstruction needs a mask-only method "
                        f"(not a structured, fine-tuning or already updated one)")

    def fn(evaluator, sparsity, pattern, **options):
        from gpsearch.methods.recon import RECON_KNOBS, check_recon_options, prune_then_reconstruct

        recon = {k[6:]: v for k, v in options.items() if k.startswith("recon_")}
        unknown = set(recon) - set(RECON_KNOBS)
        if unknown:
            raise UserError(f"unknown recon option(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(RECON_KNOBS)}")
        check_recon_options(**recon)
        rest = {k: v for k, v in options.items() if not k.startswith("recon_")}
        if tree is not None and not rest:
            from gpsearch.methods.recon import tree_then_reconstruct

            return tree_then_reconstruct(evaluator, tree, sparsity, pattern, mode, **recon)
        return prune_then_reconstruct(evaluator, lambda: base.fn(evaluator, sparsity, pattern,
                                                                 **rest), **recon)

    tree, mode = None, "dense"
    spec = base.tree if base.tree is not None else TREE_ALIASES.get(base.name)
    if spec is not None and not base.name.startswith(SPARSEGPT_PREFIX):
        from gpsearch.tree import load_tree, terminals_used

        tree = load_tree(spec)
        mode = features if terminals_used(tree) & {"X", "S", "H"} else "dense"

    return Method(f"{base.name}{RECON_SUFFIX}", fn,
                  f"{base.help}; then least-squares reconstruction of the kept weights",
                  base.kinds, base.prepare, base.cleanup, base.tree)


def sparsegpt_tree_method(spec: str):
    """``sparsegpt:TREE``: SparseGPT whose mask selection ranks by the tree."""
    from gpsearch.jobs.compare.method import Method
    from gpsearch.methods.sparsegpt import prune_sparsegpt
    from gpsearch.tree import load_tree, terminals_used, to_prefix

    text = spec[len(SPARSEGPT_PREFIX):].strip()
    if not text:
        raise UserError(f"{spec!r}: give a tree after '{SPARSEGPT_PREFIX}', e.g. "
                        f"'{SPARSEGPT_PREFIX}{WANDA}'")
    tree = load_tree(text)
    needed = terminals_used(tree)

    def fn(evaluator, sparsity, pattern, **options):
        if "metric" in options:
            raise UserError(f"{spec}: the metric is already given in the method name")
        return prune_sparsegpt(evaluator, sparsity, pattern, metric=tree, **options)

    def prepare(evaluator):
        if "G" in needed:
            evaluator.features.get("G")

    return Method(spec, fn, f"SparseGPT with mask selection by {to_prefix(tree)}",
                  prepare=prepare, tree=to_prefix(tree))


def weight_update_methods(trees: list[str]) -> list[str]:
    """Method specs for each tree (file, name or expression): its mask with reconstruction,
    and the tree inside SparseGPT: ``[TREE+recon, sparsegpt:TREE, ...]``."""
    out = []
    for t in trees:
        out += [f"{t}{RECON_SUFFIX}", f"{SPARSEGPT_PREFIX}{t}"]
    return out


UPDATES = ("none", "recon", "sparsegpt")


def evaluate_with_update(evaluator, tree, sparsity: float, pattern, ev, features: str = "dense",
                         update: str = "recon", per_layer: bool = False, keep: bool = False,
                         recon: dict | None = None) -> dict:
    """``Evaluator.evaluate`` with a weight update (``gpsearch prune --update``): ``recon`` =
    the tree's mask (``features`` mode) then least-squares reconstruction; ``sparsegpt`` = the
    tree ranking SparseGPT's mask selection. Same record, plus ``update`` and its info."""
    import time

    from gpsearch.methods.recon import tree_then_reconstruct
    from gpsearch.methods.sparsegpt import prune_sparsegpt
    from gpsearch.tree import terminals_used

    if update not in UPDATES[1:]:
        raise UserError(f"unknown weight update {update!r}; choose {', '.join(UPDATES)}")
    try:
        t0 = time.perf_counter()
        if update == "recon":
            mode = features if terminals_used(tree) & {"X", "S", "H"} else "dense"
            info = tree_then_reconstruct(evaluator, tree, sparsity, pattern, mode, **(recon or {}))
        else:
            info = prune_sparsegpt(evaluator, sparsity, pattern, metric=tree)
            features = "sequential"
        prune_s = time.perf_counter() - t0
        counts = evaluator.layer_counts()
        t1 = time.perf_counter()
        ppl = evaluator.perplexity(ev)
        forward_s = time.perf_counter() - t1
    finally:
        if not keep:
            evaluator.restore()
    info.pop("calibration", None)
    rec = evaluator.record(tree, sparsity, pattern, features, counts, ppl, ev,
                           {"prune_s": prune_s, "forward_s": forward_s}, per_layer)
    return {**rec, "update": update, "update_info": info}
