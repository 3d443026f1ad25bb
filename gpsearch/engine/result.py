"""The record one candidate evaluation returns (plain data: crosses process boundaries as is)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

PENALTY = 1.0e6  # fitness of a tree that fails: finite (DEAP's selection breaks on NaN/inf)
MAX_FITNESS = 1.0e5  # perplexities above this are capped, so a real tree always beats a failure
# Rankings compare fitness on a relative grid this coarse, so that kernel noise does not decide
# between near-equal trees (ties go to the smaller tree, then the text). Measured: AVX-512 vs
# AVX2 kernels on one machine move a first-stage KL by at most 6.2e-6 relative (13 trees,
# bench/kernel_variants.json); two machines moved one by 8.7e-5 (1.02818 vs 1.02809).
FITNESS_RESOLUTION = 1e-3


@dataclass
class EvalResult:
    expr: str
    fitness: float
    ppl: float | None = None
    ok: bool = True
    error: str | None = None
    seconds: float = 0.0
    achieved_sparsity: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def failure(cls, expr: str, error: str, seconds: float = 0.0) -> "EvalResult":
        return cls(expr=expr, fitness=PENALTY, ok=False, error=error, seconds=seconds)


def fitness_of(ppl: float) -> float:
    """Perplexity -> finite fitness (lower is better)."""
    if ppl != ppl or ppl == float("inf"):
        return MAX_FITNESS
    return min(float(ppl), MAX_FITNESS)


def fitness_level(fitness: float) -> float:
    """The grid cell of a fitness (lower is better): floor(log(f) / log(1 + resolution)), so
    values within a relative FITNESS_RESOLUTION of each other usually share a cell. A grid is
    transitive (a sort key) but two values either side of a cell border still differ: it makes a
    kernel-noise flip rare (about difference / resolution per near-tie), not impossible."""
    if fitness != fitness:
        return math.inf
    if fitness <= 0 or math.isinf(fitness):
        return -math.inf if fitness <= 0 else math.inf
    return float(math.floor(math.log(fitness) / math.log1p(FITNESS_RESOLUTION)))
