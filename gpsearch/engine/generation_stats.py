"""One generation's statistics for the logbook (pure: no torch, no I/O): the counters it added,
the population's fitness spread and validity, and its diversity (distinct masks, the largest
share descending from one root, the best-to-median gap)."""

from __future__ import annotations

import statistics

from gpsearch.engine.result import PENALTY

# fp_failed: candidates whose exact mask fingerprint could not be computed (evaluated in full);
# later_evals: evaluations on a later stage's extra windows; windows: validation windows scored
# for candidates, all stages (staged fitness only): with seqlen and the number of conditions,
# the forward tokens a search spent, a cost that does not depend on the machine
# hurdled: candidates the cheap proxy rejected before their first-stage evaluation
COUNTERS = ("candidates", "evaluated", "key_hits", "fp_hits", "invalid", "failed", "fp_failed",
            "later_evals", "windows", "hurdled")


def generation_stats(searcher, gen: int, before: dict) -> dict:
    """The logbook row of generation ``gen``; ``before``: the counters when it started."""
    s = searcher
    fits = [ind.fitness for ind in s.population]
    new = {c: s.counters[c] - before[c] for c in COUNTERS}
    total = s.counters["candidates"]
    avoided = s.counters["key_hits"] + s.counters["fp_hits"]
    return {"gen": gen, **new, "best": min(fits), "median": statistics.median(fits),
            **diversity(s.population, s.cache, s.lineage),
            "valid": sum(f < PENALTY for f in fits), "best_expr": str(s.population[0]),
            "mean_size": round(sum(map(len, s.population)) / len(s.population), 3),
            "distinct": len({ind.key for ind in s.population}),
            "cache_size": len(s.cache),
            "hit_rate": round(avoided / total, 6) if total else 0.0,
            "skip_rate": (round((avoided + s.counters["invalid"]) / total, 6)
                          if total else 0.0)}


def diversity(pop: list, cache: dict, lineage: dict) -> dict:
    """Distinct masks in the population, the largest share descending from one root (a seed,
    'init' or 'immigrant'), and the relative best-to-median gap."""
    masks = {cache.get(ind.key, {}).get("fingerprint") or ind.key for ind in pop}
    counts: dict[str, int] = {}
    for ind in pop:
        for root in lineage.get(ind.key, ["init"]):
            counts[root] = counts.get(root, 0) + 1
    top = max(counts, key=lambda r: (counts[r], r)) if counts else None
    fits = sorted(ind.fitness for ind in pop)
    best, median = fits[0], statistics.median(fits)
    return {"distinct_masks": len(masks), "top_root": top,
            "top_root_share": round(counts[top] / len(pop), 4) if top else 0.0,
            "gap": round(median / best - 1, 6) if best > 0 else None}
