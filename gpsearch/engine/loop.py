"""The searcher: a (mu + lambda) loop of our own with elitism, dedup and a hall of fame.

    gen 0: seeds + random trees -> OOS -> evaluate
    gen g: lambda children (tournament, crossover / mutation, static limits) -> OOS -> evaluate
           -> survivors: the ``elite`` best distinct trees of parents + children, the rest by
              tournament without replacement among the other distinct trees

Evaluation dedups before any forward pass: a canonical key already in the cache reuses its
fitness; else (with ``hurdle``) a cheap proxy may reject it, then a mask fingerprint either
rejects the tree ("invalid: ...", PENALTY, no forward pass) or matches an evaluated fingerprint
(its fitness is reused); only the rest go to ``backend.evaluate_many(expressions)``
(``gpsearch.engine.evaluation``). Simplification, keys and fingerprints need
tensors, so they are injected (``TreeServices``): this module never imports torch.

Hooks instead of flags: ``on_evaluation`` callables get one plain record per candidate,
``on_generation`` callables get (searcher, stats, seconds) after every generation (logging,
checkpoints, progress bars). All randomness comes from ``self.rng`` (seeded by the config) in
this driver, so a run depends only on its seed, not on how many workers the backend has.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict, dataclass, field

from gpsearch.engine.generation_stats import COUNTERS, generation_stats
from gpsearch.engine.primitives import Individual, build_pset, parse_expr, within_limits
from gpsearch.engine.result import PENALTY, fitness_level
from gpsearch.engine.space import SearchSpace
from gpsearch.engine.variation import VariationConfig, random_tree, rank_key, vary
from gpsearch.errors import BackendLost, UserError


@dataclass(frozen=True)
class SearchConfig:
    population: int = 16  # mu
    offspring: int = 16  # lambda
    elite: int = 8  # best distinct trees always kept
    hof_size: int = 10
    seed: int = 0
    novelty_retries: int = 4  # re-draws of a child whose key is already in the generation
    variation: VariationConfig = field(default_factory=VariationConfig)
    stages: tuple = ()  # ((windows, fraction), ...): staged fitness; () = the backend's fitness
    fitness: str = "ppl"  # the score of a stage: "ppl" or "kl" (to the dense model)
    immigrants: int = 0  # children per generation replaced by new random trees (diversity)
    init_population: int = 0  # trees evaluated in generation 0 (0: population); the best survive
    niches: int = 0  # survivor slots for the best tree of an input set the elite does not read
    # the hurdle: a candidate whose proxy (backend.proxy_many, lower is better) exceeds hurdle x
    # the reference tree's is not evaluated (PENALTY, "hurdle" in the log); 0: off; seeds pass
    hurdle: float = 0.0
    hurdle_reference: str = "mul(W, sqrt(X))"  # Wanda's tree
    # refill: up to this many extra rounds of children per generation, bred from the same
    # population, while fewer than ``offspring`` of its children got a first-stage evaluation
    # (the rest hurdled, duplicates or invalid): each generation pays about ``offspring``
    # evaluations and considers more candidates; 0: off (one round of ``offspring`` children)
    refill: int = 0

    def __post_init__(self):
        if self.population < 2 or self.offspring < 1:
            raise UserError("need a population of at least 2 and at least 1 child per generation")
        if not 0 <= self.elite <= self.population:
            raise UserError(f"elite must be in [0, population] (got {self.elite})")
        if self.hof_size < 1 or self.novelty_retries < 0:
            raise UserError("hof_size must be >= 1 and novelty_retries >= 0")
        if self.fitness not in ("ppl", "kl"):
            raise UserError(f"unknown fitness {self.fitness!r}; choose ppl or kl")
        if not 0 <= self.immigrants <= self.offspring:
            raise UserError(f"immigrants must be in [0, offspring] (got {self.immigrants})")
        if self.init_population and self.init_population < self.population:
            raise UserError(f"init_population must be 0 or at least the population "
                            f"({self.population}; got {self.init_population})")
        if not 0 <= self.niches <= self.population - self.elite:
            raise UserError(f"niches must be in [0, population - elite] (got {self.niches})")
        if self.refill < 0:
            raise UserError(f"refill must be 0 (off) or a number of rounds (got {self.refill})")
        if self.hurdle and not self.hurdle >= 1.0:
            raise UserError(f"hurdle must be 0 (off) or a ratio >= 1 (got {self.hurdle})")
        object.__setattr__(self, "stages", tuple((int(w), float(f)) for w, f in self.stages))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        d = dict(d)
        if "stages" in d:
            d["stages"] = tuple(tuple(x) for x in d["stages"])
        var = dict(d.pop("variation", {}))
        if "subtree_height" in var:
            var["subtree_height"] = tuple(var["subtree_height"])
        return cls(**d, variation=VariationConfig(**var))


def _reads_input(ind: Individual) -> bool:
    """Whether a tree has a leaf that is not a constant (a constant-only tree is never a metric)."""
    return bool(inputs_read(ind))


def inputs_read(ind: Individual) -> frozenset:
    """The input terminals a tree reads (its niche: {W}, {W, X}, ...); constants do not count."""
    return frozenset(node.name for node in ind
                     if node.arity == 0 and not _CONSTANT.match(node.name))


_CONSTANT = re.compile(r"^c-?[0-9]")


class TreeServices:
    """What the searcher needs to know about trees (defaults: no OOS, the text as its own key,
    no fingerprint). ``gpsearch.pruning.fingerprint.ExprServices`` is the real implementation."""

    def simplify(self, expr: str) -> str:
        return expr

    def key(self, expr: str) -> str:
        return expr

    def fingerprint(self, expr: str) -> str | None:
        return None


class Searcher:
    """``step()`` runs one generation (the first one builds the initial population); ``run(n)``
    runs n; ``run_until(g)`` stops once generation g is done."""

    def __init__(self, space: SearchSpace, backend, config: SearchConfig = SearchConfig(),
                 services=None, seeds: list[str] = ()):
        self.space, self.backend, self.cfg = space, backend, config
        self.services = services or TreeServices()
        self.pset = build_pset(space)
        self.seeds = [self._seed(s) for s in seeds]
        if len(self.seeds) > config.population:
            raise UserError(f"{len(self.seeds)} seed trees for a population of {config.population}")
        self.rng = random.Random(config.seed)
        self.generation = -1  # last completed generation
        self.population: list[Individual] = []
        self.cache: dict[str, dict] = {}  # canonical key -> evaluation record
        self.fp_index: dict[str, str] = {}  # fingerprint -> key of the evaluated tree
        self.hof: list[dict] = []
        self.lineage: dict[str, list[str]] = {}  # canonical key -> seeds it descends from
        self.logbook: list[dict] = []
        self.counters = {c: 0 for c in COUNTERS}
        self.hurdle_bar: float | None = None  # hurdle x the reference's proxy (first use)
        self.on_evaluation: list = []
        self.on_generation: list = []
        self.on_progress: list = []  # (generation, "what is being done") before each batch

    # ---- trees --------------------------------------------------------------------------------
    def _seed(self, expr: str) -> str:
        ind = parse_expr(expr, self.pset)
        if not within_limits(ind, self.space):
            raise UserError(f"seed tree {expr[:60]!r} exceeds the search space limits "
                            f"(height {self.space.max_height}, size {self.space.max_size})")
        return str(ind)

    def _prepare(self, ind: Individual) -> Individual:
        """OOS (the simplified tree replaces the child) and the canonical key."""
        before = str(ind)
        simple = self.services.simplify(before)
        if simple != before:
            try:
                new = parse_expr(simple, self.pset)
            except UserError:  # a rule used an operator this space lacks: keep the original
                new = None
            if new is not None:
                new.origin = {**ind.origin, "before_oos": before}
                ind = new
        ind.key = self.services.key(str(ind))
        return ind

    def _initial_population(self) -> list[Individual]:
        inds, keys = [], set()
        for i, expr in enumerate(self.seeds):
            ind = self._prepare(parse_expr(expr, self.pset))
            ind.origin = {"op": "seed", "parents": [], **ind.origin}
            if ind.key not in keys:
                inds.append(ind)
                keys.add(ind.key)
                self.lineage.setdefault(ind.key, [f"seed{i}"])
        while len(inds) < max(self.cfg.population, self.cfg.init_population):
            ind = self._novel_random(keys, "init")
            inds.append(ind)
            keys.add(ind.key)
        return inds

    def _novel_random(self, seen: set, root: str) -> Individual:
        for _ in range(20):  # prefer trees not seen yet that read at least one input
            ind = self._prepare(random_tree(self.pset, self.space, self.rng))
            if ind.key not in seen and ind.key not in self.cache and _reads_input(ind):
                break
        if root != "init":
            ind.origin = {**ind.origin, "op": root}
        self.lineage.setdefault(ind.key, [root])
        return ind

    def _offspring(self, n: int | None = None, seen: set | None = None) -> list[Individual]:
        """``offspring`` children (``immigrants`` of them random), or ``n`` bred ones (a refill
        round) avoiding the keys in ``seen`` (updated)."""
        refill = n is not None
        seen = {ind.key for ind in self.population} if seen is None else seen
        by_text = {str(ind): ind.key for ind in self.population}
        children = []
        n_bred = n if refill else self.cfg.offspring - self.cfg.immigrants
        for _ in range(n_bred):
            for _ in range(1 + self.cfg.novelty_retries):
                child = self._prepare(vary(self.population, self.rng, self.pset, self.space,
                                           self.cfg.variation))
                if child.key not in seen and not (refill and child.key in self.cache):
                    break  # (a refill round also avoids trees scored or hurdled before)
            seen.add(child.key)
            roots = sorted({r for p in child.origin.get("parents", [])
                            for r in self.lineage.get(by_text.get(p), [])})
            self.lineage.setdefault(child.key, roots or ["init"])
            children.append(child)
        for _ in range(0 if refill else self.cfg.immigrants):  # new random material each
            child = self._novel_random(seen, "immigrant")                # generation
            seen.add(child.key)
            children.append(child)
        return children

    def _children(self, gen: int) -> list[Individual]:
        """One generation's children, evaluated: a first round of ``offspring``, then up to
        ``refill`` rounds bred for the children that got no first-stage evaluation."""
        children = self._offspring()
        seen = {ind.key for ind in self.population} | {c.key for c in children}
        start = self.counters["evaluated"]
        self._evaluate(children, gen)
        for _ in range(self.cfg.refill):
            missing = self.cfg.offspring - (self.counters["evaluated"] - start)
            if missing <= 0:
                break
            more = self._offspring(missing, seen)
            self._evaluate(more, gen)
            children += more
        return children

    def _survivors(self, pool: list[Individual]) -> list[Individual]:
        distinct, dups, keys = [], [], set()
        for ind in sorted(pool, key=rank_key):
            (dups if ind.key in keys else distinct).append(ind)
            keys.add(ind.key)
        mu = self.cfg.population
        chosen, rest = distinct[:self.cfg.elite], distinct[self.cfg.elite:]
        if self.cfg.niches:
            chosen, rest = self._niche_bests(chosen, rest)
        size = self.cfg.variation.tournament
        while len(chosen) < mu and rest:
            picks = [self.rng.randrange(len(rest)) for _ in range(size)]
            chosen.append(rest.pop(min(picks, key=lambda i: rank_key(rest[i]))))
        chosen += dups[:mu - len(chosen)]
        return sorted(chosen, key=rank_key)

    def _niche_bests(self, chosen: list, rest: list) -> tuple[list, list]:
        """Up to ``niches`` more survivors: the best valid tree of each input set (niche) that no
        tree chosen so far reads, best niches first, so that a building block (X, G, H...) is not
        lost to a population of magnitude-like trees before variation can combine it."""
        have = {inputs_read(ind) for ind in chosen}
        bests: dict[frozenset, Individual] = {}
        for ind in rest:  # rest is sorted best first: the first of each niche is its best
            niche = inputs_read(ind)
            if niche not in have and niche not in bests and ind.fitness < PENALTY:
                bests[niche] = ind
        picked = sorted(bests.values(), key=rank_key)[:self.cfg.niches]
        ids = {id(ind) for ind in picked}
        return chosen + picked, [ind for ind in rest if id(ind) not in ids]

    # ---- evaluation ---------------------------------------------------------------------------
    def _evaluate(self, inds: list[Individual], gen: int) -> None:
        from gpsearch.engine.evaluation import GenerationEvaluator

        GenerationEvaluator(self).run(inds, gen)

    def _run_backend(self, exprs: list[str], windows: tuple | None = None) -> list:
        if not exprs:
            return []
        try:
            results = list(self.backend.evaluate_many(exprs) if windows is None
                           else self.backend.evaluate_many(exprs, windows=windows))
            if len(results) != len(exprs):
                raise RuntimeError(f"backend returned {len(results)} results for {len(exprs)}")
            return results
        except BackendLost:  # no worker left: stop the search (its run directory is intact)
            raise
        except Exception:  # noqa: BLE001 - retry one by one: a bad tree must not stop the search
            return [self._run_one(e, windows) for e in exprs]

    def _run_one(self, expr: str, windows: tuple | None = None):
        from gpsearch.engine.result import EvalResult

        try:
            return (self.backend.evaluate_many([expr]) if windows is None
                    else self.backend.evaluate_many([expr], windows=windows))[0]
        except BackendLost:
            raise
        except Exception as e:  # noqa: BLE001
            return EvalResult.failure(expr, f"{type(e).__name__}: {e}"[:300])

    def _progress(self, gen: int, what: str) -> None:
        for hook in self.on_progress:
            hook(gen, what)

    def _emit(self, ind: Individual, rec: dict, hit, gen: int, seconds: float) -> None:
        record = {"gen": gen, "expr": ind.origin.get("before_oos", str(ind)),
                  "simplified": str(ind), "key": ind.key, "fitness": rec["fitness"],
                  "ppl": rec["ppl"], "hit": hit, "op": ind.origin.get("op"),
                  "parents": ind.origin.get("parents", []), "error": rec["error"],
                  "seconds": round(seconds, 4)}
        if "stages" in rec:
            record["stages"] = rec["stages"]
        if rec.get("fingerprint"):
            record["fingerprint"] = rec["fingerprint"]
        if rec.get("proxy") is not None:
            record["proxy"] = rec["proxy"]
        if rec.get("fingerprint_error"):
            record["fingerprint_error"] = rec["fingerprint_error"]
        for hook in self.on_evaluation:
            hook(record)

    def _add_to_hof(self, key: str, gen: int) -> None:
        rec = self.cache[key]
        final = rec["stages"][-1] if rec.get("stages") else None
        entry = {"key": key, "expr": rec["expr"],
                 "fitness": final["score"] if final else rec["fitness"],
                 "ppl": final["ppl"] if final else rec["ppl"],
                 "size": len(parse_expr(rec["expr"], self.pset)), "gen": gen}
        if final:
            entry["windows"] = final["windows"]
        self.hof.append(entry)
        self.hof.sort(key=lambda h: (fitness_level(h["fitness"]), h["size"], h["expr"]))
        del self.hof[self.cfg.hof_size:]

    # ---- driver -------------------------------------------------------------------------------
    def step(self) -> dict:
        """One generation; returns its statistics (also appended to ``self.logbook``)."""
        t0, before = time.perf_counter(), dict(self.counters)
        gen = self.generation + 1
        if gen == 0:
            inds = self._initial_population()
            self._evaluate(inds, gen)
            self.population = (sorted(inds, key=rank_key) if len(inds) <= self.cfg.population
                               else self._survivors(inds))
        else:
            children = self._children(gen)
            self.population = self._survivors(self.population + children)
        self.generation = gen
        stats = generation_stats(self, gen, before)
        self.logbook.append(stats)
        for hook in self.on_generation:
            hook(self, stats, time.perf_counter() - t0)
        return stats

    def run(self, n: int) -> list[dict]:
        return [self.step() for _ in range(n)]

    def run_until(self, generation: int) -> list[dict]:
        out = []
        while self.generation < generation:
            out.append(self.step())
        return out

    def best(self) -> dict | None:
        """The best evaluated tree (hall of fame head), or None before any success."""
        return self.hof[0] if self.hof else None
