"""Multi-condition fitness: one backend per evaluation condition (another model, rescaled
terminals, another calibration seed), combined into one ``evaluate_many`` the search calls as it
calls any backend.

Each condition is scored as the DEGRADATION of its own model relative to its own dense model, so
that models of different quality weigh alike:
- ``kl``: the per-window KL to that model's dense next-token distribution (already relative);
- ``nll``: the per-window NLL minus the dense model's NLL on the same window, so that
  exp(mean) is the PPL ratio pruned / dense (1.0 = no loss).
The conditions' per-window values are reduced window by window (``mean`` or ``max``: the worst
condition on each window), so the staged search adds windows exactly as before: a stage's score
is the mean over its windows of the reduced values. With ``mean`` that is the mean of the
conditions' scores (KL) or the geometric mean of their PPL ratios; with ``max`` it is at least
the worst condition's score. The record's ``ppl`` is then the combined PPL RATIO, not a PPL.

The fingerprint of a candidate is the hash of its fingerprints under every condition (equal
masks everywhere = the same fitness). Serial backends are run in turn; Ray backends (one group of
actors per condition) are run at the same time, one thread per condition waiting on its actors.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

from gpsearch.engine.result import EvalResult, fitness_of

REDUCERS = ("mean", "max")


def reduce_values(columns: list[list[float]], how: str) -> list[float]:
    """Per-window reduction of equally long value lists (one per condition)."""
    if how not in REDUCERS:
        raise ValueError(f"unknown reduction {how!r}")
    if len({len(c) for c in columns}) != 1:
        raise ValueError("every condition must score the same number of windows")
    if how == "max":
        return [max(vals) for vals in zip(*columns)]
    return [math.fsum(vals) / len(vals) for vals in zip(*columns)]


def combine_fingerprints(fps: list[str | None]) -> str | None:
    for fp in fps:
        if fp and fp.startswith("invalid:"):
            return fp
    if any(fp is None for fp in fps):
        return None
    return hashlib.sha256("|".join(fps).encode()).hexdigest()[:32]


class MultiConditionBackend:
    """``evaluate_many`` / ``fingerprint_many`` over several backends (one per condition).

    backends: objects with ``evaluate_many(exprs, windows)``, ``fingerprint_many(exprs)``,
    ``dense_nll()`` and ``close()``; labels: one text per backend (records, errors);
    fitness: "ppl" or "kl"; reduce: "mean" or "max"; parallel: run the backends at once (Ray)."""

    def __init__(self, backends: list, labels: list[str], fitness: str = "kl",
                 reduce: str = "mean", parallel: bool = False, evaluator=None):
        if reduce not in REDUCERS:
            raise ValueError(f"unknown reduction {reduce!r}")
        if len(backends) != len(labels) or not backends:
            raise ValueError("one label per backend, at least one backend")
        self.backends, self.labels, self.fitness, self.reduce = backends, labels, fitness, reduce
        self.parallel = parallel and len(backends) > 1
        self._dense = None
        if evaluator is not None:  # the main model's resident evaluator (test report, checks)
            self.evaluator = evaluator

    def _each(self, fn):
        if not self.parallel:
            return [fn(b) for b in self.backends]
        with ThreadPoolExecutor(len(self.backends)) as pool:
            return list(pool.map(fn, self.backends))

    def dense_nll(self) -> list[list[float]]:
        if self._dense is None:
            self._dense = self._each(lambda b: list(b.dense_nll()))
        return self._dense

    def fingerprint_many(self, exprs: list[str]) -> list[str | None]:
        per = self._each(lambda b: list(b.fingerprint_many(exprs)) if hasattr(b, "fingerprint_many")
                         else [None] * len(exprs))
        return [combine_fingerprints([p[i] for p in per]) for i in range(len(exprs))]

    def proxy_many(self, exprs: list[str]) -> list[float | None]:
        """The hurdle's proxies under the first condition (the baseline's features)."""
        first = self.backends[0]
        return (list(first.proxy_many(exprs)) if hasattr(first, "proxy_many")
                else [None] * len(exprs))

    def evaluate_one(self, expr: str, windows: tuple[int, int] | None = None) -> EvalResult:
        return self.evaluate_many([expr], windows)[0]

    def evaluate_many(self, exprs: list[str],
                      windows: tuple[int, int] | None = None) -> list[EvalResult]:
        from gpsearch.fitness.stages import score_of

        exprs = list(exprs)
        per = self._each(lambda b: list(b.evaluate_many(exprs, windows)))
        dense = self.dense_nll()
        out = []
        for i, expr in enumerate(exprs):
            results = [p[i] for p in per]
            seconds = sum(r.seconds for r in results)
            bad = next((k for k, r in enumerate(results) if not r.ok), None)
            if bad is not None:
                out.append(EvalResult.failure(expr, f"[{self.labels[bad]}] {results[bad].error}",
                                              seconds))
                continue
            a, b = results[0].extra["windows"]
            nll = reduce_values([[v - d for v, d in zip(r.extra["nll"], dn[a:b])]
                                 for r, dn in zip(results, dense)], self.reduce)
            extra = {"windows": [a, b], "nll": nll, "reduce": self.reduce,
                     "conditions": [{"condition": lb, "fitness": r.fitness, "ppl": r.ppl}
                                    for lb, r in zip(self.labels, results)]}
            ratio = score_of("ppl", nll)
            if self.fitness == "kl":
                extra["kl"] = reduce_values([r.extra["kl"] for r in results], self.reduce)
                value = score_of("kl", extra["kl"])
            else:
                value = ratio
            sparsities = [r.achieved_sparsity for r in results if r.achieved_sparsity is not None]
            out.append(EvalResult(expr=expr, fitness=fitness_of(value), ppl=fitness_of(ratio),
                                  seconds=seconds,
                                  achieved_sparsity=(sum(sparsities) / len(sparsities)
                                                     if sparsities else None), extra=extra))
        return out

    def close(self) -> None:
        for b in reversed(self.backends):  # the first one started (and owns) a local Ray
            b.close()
