"""Allocations on a resident model: ``--allocation uniform|owl|FILE.json`` -> an ``Allocated``
sparsity (the target as a float, carrying exact per-linear ratios) for ``Evaluator.prune``,
SparseGPT and the reconstruction flow. OWL's outlier ratios come from the given tree's scores
on dense features (OWL scores the dense model's activations too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gpsearch.allocation.levels import (
    DEFAULT_OWL_LAMBDA,
    DEFAULT_OWL_M,
    Allocated,
    Allocation,
    block_index,
    block_params,
    check_allocation,
    exact_ratios,
    n_blocks,
    outlier_ratio,
    owl_blocks,
    uniform,
)
from gpsearch.errors import UserError
from gpsearch.io import relative_path


@dataclass(frozen=True)
class AllocationSpec:
    kind: str  # uniform, owl, file
    path: str | None = None
    owl_m: float = DEFAULT_OWL_M
    owl_lambda: float = DEFAULT_OWL_LAMBDA

    @classmethod
    def from_dict(cls, d: dict) -> "AllocationSpec":
        return cls(d["kind"], d.get("path"), float(d.get("owl_m", DEFAULT_OWL_M)),
                   float(d.get("owl_lambda", DEFAULT_OWL_LAMBDA)))

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        if self.kind == "owl":
            d.update(owl_m=self.owl_m, owl_lambda=self.owl_lambda)
        if self.path:
            d["path"] = self.path
        return d


def parse_spec(text: str | None, owl_m: float = DEFAULT_OWL_M,
               owl_lambda: float = DEFAULT_OWL_LAMBDA) -> AllocationSpec | None:
    """None/'uniform'/'owl'/a .json file; a file is read and checked now (before any model)."""
    if text is None:
        return None
    if not owl_m > 0:
        raise UserError(f"--owl-m must be > 0, got {owl_m}")
    if not 0 <= owl_lambda < 0.5:
        raise UserError(f"--owl-lambda must be in [0, 0.5), got {owl_lambda}")
    t = str(text).strip()
    if t in ("uniform", "owl"):
        return AllocationSpec(t, None, owl_m, owl_lambda)
    if not t.endswith(".json"):
        raise UserError(f"--allocation {t!r}: expected uniform, owl or a FILE.json")
    from gpsearch.allocation.file import read_allocation

    read_allocation(t)
    return AllocationSpec("file", t, owl_m, owl_lambda)


def check_pattern(spec: AllocationSpec | None, pattern) -> None:
    """N:M patterns fix every layer's sparsity: only uniform (or no) allocation goes with them."""
    if spec is not None and spec.kind != "uniform" and pattern.kind == "nm":
        raise UserError(f"--allocation {spec.path or spec.kind}: pattern {pattern} fixes every "
                        f"layer's sparsity; a layer-wise allocation needs unstructured")


@torch.no_grad()
def block_outlier_ratios(evaluator, tree, m: float) -> list[float]:
    """Per block: the share of the tree's scores (all its linears) above m x their mean."""
    evaluator.prepare(tree)
    by_block: dict[int, list[str]] = {}
    for name in evaluator.linears:
        by_block.setdefault(block_index(name), []).append(name)
    out = []
    for i in sorted(by_block):
        scores = [evaluator.score(tree, n).float().cpu() for n in by_block[i]]
        out.append(outlier_ratio(scores, m))
    return out


def owl_allocation(evaluator, tree, target: float, m: float = DEFAULT_OWL_M,
                   lam: float = DEFAULT_OWL_LAMBDA) -> Allocation:
    from gpsearch.tree import to_prefix

    shapes = evaluator.shapes()
    ratios = block_outlier_ratios(evaluator, tree, m)
    blocks = owl_blocks(ratios, target, lam, [float(p) for p in block_params(shapes)])
    return Allocation(target, blocks, method="owl",
                      info={"owl_m": m, "owl_lambda": lam, "score_tree": to_prefix(tree),
                            "outlier_ratios": ratios})


def allocate(evaluator, spec: AllocationSpec | None, target: float, pattern, tree=None):
    """The sparsity to pass on: ``target`` itself when spec is None, else an ``Allocated``.
    ``tree``: the metric whose scores OWL reads (default Wanda's)."""
    if spec is None:
        return target
    shapes = evaluator.shapes()
    if spec.kind == "uniform":
        alloc = uniform(target, n_blocks(shapes))
        return Allocated(target, {n: float(target) for n in shapes}, alloc)
    check_pattern(spec, pattern)
    if spec.kind == "owl":
        from gpsearch.tree import load_tree

        alloc = owl_allocation(evaluator, tree if tree is not None else load_tree("wanda"),
                               target, spec.owl_m, spec.owl_lambda)
    else:
        from gpsearch.allocation.file import read_allocation

        alloc = read_allocation(spec.path)
        if abs(alloc.target - target) > 1e-9:
            raise UserError(f"allocation file {spec.path} is for sparsity {alloc.target:g}, "
                            f"not {target:g}")
        alloc.info = {**alloc.info, "file": relative_path(Path(spec.path))}
    ratios = check_allocation(alloc, shapes)
    return Allocated(target, exact_ratios(ratios, shapes, target, pattern.scope), alloc)


def scaled(alloc: Allocation, shapes: dict, target: float, scope: str = "row") -> Allocated:
    """``alloc``'s profile at another total: every requested ratio times target / alloc.target,
    then made exact at ``target`` (iterative pruning's rounds on the way to the allocation)."""
    ratios = check_allocation(alloc, shapes)
    factor = target / alloc.target if alloc.target > 0 else 0.0
    per = exact_ratios({n: r * factor for n, r in ratios.items()}, shapes, target, scope)
    return Allocated(target, per, alloc)


def plot_next_to(rec: dict, json_path: str | Path | None) -> Path | None:
    """``<json stem>_allocation.png`` next to a result that carries ``block_sparsity``."""
    if not json_path or "block_sparsity" not in rec:
        return None
    from gpsearch.plots import plot_block_allocation

    p = Path(json_path)
    a = rec.get("allocation", {})
    title = f"{a.get('method', '?')} allocation, target {rec['sparsity']:g}"
    if "ppl" in rec:
        title += f", PPL {rec['ppl']:.2f}"
    series = {"achieved": rec["block_sparsity"]}
    if a.get("blocks") and not a.get("kinds"):
        series["requested"] = a["blocks"]
    return plot_block_allocation(series, p.with_name(p.stem + "_allocation.png"),
                                 rec["sparsity"], title)
