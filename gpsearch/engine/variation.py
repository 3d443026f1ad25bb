"""Selection and variation: tournament, one-point crossover, four mutations, static limits.

All randomness comes from the searcher's master ``random.Random``. DEAP's operators draw from
the global ``random`` module, so each DEAP call runs inside ``master_rng(rng)``: the global state
is set to the master's, the call draws, the master takes the advanced state back and the global
state is restored. The result depends only on the master seed, whatever else uses ``random``.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial

from deap import gp

from gpsearch.engine.primitives import Individual, within_limits
from gpsearch.engine.result import fitness_level
from gpsearch.engine.space import SearchSpace
from gpsearch.errors import UserError

MUTATIONS = ("uniform", "node", "shrink", "insert")


@dataclass(frozen=True)
class VariationConfig:
    """How offspring are made. p_crossover + p_mutation <= 1; the rest is plain reproduction."""

    p_crossover: float = 0.5
    p_mutation: float = 0.5
    tournament: int = 3
    mutation_weights: dict = field(default_factory=lambda: {m: 1.0 for m in MUTATIONS})
    subtree_height: tuple[int, int] = (0, 2)  # height of the subtree a uniform mutation grows
    limit_retries: int = 5  # variations tried before a child over a limit becomes its parent

    def __post_init__(self):
        if not (0 <= self.p_crossover <= 1 and 0 <= self.p_mutation <= 1
                and self.p_crossover + self.p_mutation <= 1 + 1e-12):
            raise UserError("need p_crossover, p_mutation >= 0 with p_crossover + p_mutation <= 1")
        if self.tournament < 1:
            raise UserError(f"tournament size must be at least 1 (got {self.tournament})")
        bad = set(self.mutation_weights) - set(MUTATIONS)
        if bad or not any(w > 0 for w in self.mutation_weights.values()):
            raise UserError(f"mutation weights: need positive weights for {', '.join(MUTATIONS)}")

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def master_rng(rng: random.Random):
    """Run DEAP code (which uses the global ``random``) on the master generator's stream."""
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


def rank_key(ind: Individual) -> tuple:
    """Sort order of individuals: lower fitness (on the grid of ``fitness_level``: kernel noise
    does not decide), then smaller tree, then text (deterministic)."""
    return (fitness_level(ind.fitness), len(ind), str(ind))


def tournament(pool: list[Individual], rng: random.Random, size: int) -> Individual:
    """Best of ``size`` individuals drawn with replacement (ties: smaller tree, then text)."""
    return min((pool[rng.randrange(len(pool))] for _ in range(size)), key=rank_key)


def random_tree(pset: gp.PrimitiveSet, space: SearchSpace, rng: random.Random,
                attempts: int = 50) -> Individual:
    """A half-and-half tree of height in space.init_height within the static limits."""
    lo, hi = space.init_height
    for _ in range(attempts):
        with master_rng(rng):
            ind = Individual(gp.genHalfAndHalf(pset, lo, hi))
        if within_limits(ind, space):
            ind.origin = {"op": "init", "parents": []}
            return ind
    raise UserError(f"search space {space.name}: no initial tree of height {lo}-{hi} fits "
                    f"max_size {space.max_size}")


def _mutate(child: Individual, kind: str, pset: gp.PrimitiveSet, cfg: VariationConfig) -> None:
    lo, hi = cfg.subtree_height
    if kind == "uniform":
        gp.mutUniform(child, expr=partial(gp.genHalfAndHalf, min_=lo, max_=hi), pset=pset)
    elif kind == "node":
        gp.mutNodeReplacement(child, pset=pset)
    elif kind == "shrink":
        gp.mutShrink(child)
    else:
        gp.mutInsert(child, pset=pset)


def _pick_mutation(rng: random.Random, cfg: VariationConfig) -> str:
    kinds = [k for k in MUTATIONS if cfg.mutation_weights.get(k, 0) > 0]
    return rng.choices(kinds, weights=[cfg.mutation_weights[k] for k in kinds])[0]


def vary(pool: list[Individual], rng: random.Random, pset: gp.PrimitiveSet, space: SearchSpace,
         cfg: VariationConfig) -> Individual:
    """One child: crossover (first child of a one-point crossover of two tournament winners),
    mutation of one tournament winner, or a copy. Static limits: a child over max_height or
    max_size is discarded and the same variation is tried again on the same parents (up to
    ``limit_retries`` times), after which the first parent is kept unchanged (DEAP's
    staticLimit behaviour). The child's fitness is unset; ``origin`` records how it was made."""
    u = rng.random()
    if u < cfg.p_crossover:
        op, parents = "crossover", [tournament(pool, rng, cfg.tournament) for _ in range(2)]
    elif u < cfg.p_crossover + cfg.p_mutation:
        op, parents = "mut_" + _pick_mutation(rng, cfg), [tournament(pool, rng, cfg.tournament)]
    else:
        op, parents = "copy", [tournament(pool, rng, cfg.tournament)]
    child = None
    for _ in range(cfg.limit_retries if op != "copy" else 1):
        cand = Individual(list(parents[0]))
        if op == "crossover":
            with master_rng(rng):
                gp.cxOnePoint(cand, Individual(list(parents[1])))
        elif op != "copy":
            with master_rng(rng):
                _mutate(cand, op[4:], pset, cfg)
        if within_limits(cand, space):
            child = cand
            break
    if child is None:
        child, op = Individual(list(parents[0])), op + "_over_limit"
    child.origin = {"op": op, "parents": [str(p) for p in parents]}
    return child
