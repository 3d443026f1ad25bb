"""``gpsearch compare --allocation``: which methods follow a layer-wise allocation, the parsed
allocation list, row labels (``METHOD [owl]``), the scores OWL reads per method, and the
picture of sparsity per block of every row that has one."""

from __future__ import annotations

from pathlib import Path

from gpsearch.errors import UserError
from gpsearch.jobs.compare.update import RECON_SUFFIX, SPARSEGPT_PREFIX


def allocatable(m) -> bool:
    """Methods whose masks follow a per-linear allocation: metric trees, wanda, sparsegpt (and
    sparsegpt:TREE), and their +recon variants."""
    name = m.name[:-len(RECON_SUFFIX)] if m.name.endswith(RECON_SUFFIX) else m.name
    if name.endswith("+lora"):
        return False
    return (name in ("wanda", "sparsegpt") or name.startswith(SPARSEGPT_PREFIX)
            or (m.tree is not None and name not in _registered()))


def alloc_specs(cfg, methods: list) -> list:
    """The parsed --allocation list ([None]: every linear at the sparsity); one-line errors."""
    from gpsearch.allocation.apply import parse_spec

    if not cfg.allocations:
        return [None]
    specs = [parse_spec(a, cfg.owl_m, cfg.owl_lambda) for a in _split(cfg.allocations,
                                                                          "allocation")]
    bad = [m.name for m in methods if not allocatable(m)]
    if bad:
        raise UserError(f"--allocation applies to metric trees, wanda and sparsegpt (and their "
                        f"+recon); not to {', '.join(bad)}")
    return specs


def alloc_label(spec) -> str:
    return "" if spec is None else f" [{Path(spec.path).stem if spec.path else spec.kind}]"


def owl_tree(method):
    """The scores OWL reads for a method: its own tree, Wanda's for wanda and sparsegpt."""
    return _load_tree(method.tree if method.tree is not None else "wanda")


def plot_allocations(rows: list[dict], out: Path):
    """``allocation_<pattern>_<sparsity>.png``: per-block sparsity of every row that has one
    (one line per row, one picture per pattern and sparsity); the last file's path or None."""
    import re

    from gpsearch.plots import plot_block_allocation

    groups: dict = {}
    for r in rows:
        if r.get("block_sparsity") and r.get("error") is None:
            groups.setdefault((r["pattern"], r["sparsity"]), []).append(r)
    path = None
    for (pattern, sp), rs in groups.items():
        series = {f"{r['method']}: PPL {r['ppl']:.2f}": r["block_sparsity"] for r in rs}
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"allocation_{pattern}_{sp:g}.png")
        path = plot_block_allocation(series, out / name, sp, f"sparsity per block, {pattern} "
                                     f"at {sp:g}")
        for r in rs:
            r["plot"] = name
    return path


def _registered() -> set:
    from gpsearch.jobs.compare.registry import METHODS

    return set(METHODS)


def _split(text, what):
    from gpsearch.jobs.compare.method import split_list

    return split_list(text, what)


def _load_tree(spec):
    from gpsearch.tree import load_tree

    return load_tree(spec)
