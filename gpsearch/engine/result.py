"""The record one candidate evaluation returns (plain data: crosses process boundaries as is)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PENALTY = 1.0e6  # fitness of a tree that fails: finite (DEAP's selection breaks on NaN/inf)
MAX_FITNESS = 1.0e5  # perplexities above this are capped, so a real tree always beats a failure


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
