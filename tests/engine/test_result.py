"""Fitness on a grid: rankings that kernel noise (~1e-4 relative between CPU variants) does not
decide, tested with a backend whose scores are exactly tied and then jittered."""

import hashlib
import math

import pytest

from gpsearch.engine import result
from gpsearch.engine.loop import SearchConfig, Searcher
from gpsearch.engine.result import FITNESS_RESOLUTION, PENALTY, EvalResult, fitness_level
from tests.engine.test_loop import SPACE, FakeBackend, services

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fitness_level_is_a_relative_grid():
    assert fitness_level(1.0) == fitness_level(1.0 + FITNESS_RESOLUTION / 10)
    assert fitness_level(1.0) > fitness_level(1.0 - 2 * FITNESS_RESOLUTION)  # lower ranks first
    assert fitness_level(0.0) == -math.inf and fitness_level(float("nan")) == math.inf
    assert fitness_level(PENALTY) > fitness_level(1e4)
    levels = [fitness_level(10.0 * (1 + FITNESS_RESOLUTION) ** k) for k in range(5)]
    assert levels == sorted(levels) and len(set(levels)) == 5  # one cell per resolution step


class TiedBackend(FakeBackend):
    """Scores rounded to 0.5 (many exact ties), optionally with a deterministic per-tree jitter
    of +-2e-5 relative: a stand-in for the same search on a CPU with other kernels."""

    def __init__(self, jitter: bool):
        super().__init__()
        self.jitter = jitter

    def _one(self, expr):
        res = super()._one(expr)
        if not res.ok:
            return res
        ppl = 10.0 + round((res.ppl - 10.0) * 2) / 2
        if self.jitter:
            h = hashlib.sha256(expr.encode()).digest()[0]
            ppl *= 1 + (h / 255 - 0.5) * 4e-5
        return EvalResult(expr=expr, fitness=ppl, ppl=ppl, seconds=0.01)


def run(jitter: bool):
    cfg = SearchConfig(population=8, offspring=8, elite=4, seed=7)
    s = Searcher(SPACE, TiedBackend(jitter), cfg, services(), ["mul(W, sqrt(X))"])
    s.run(5)
    return [h["expr"] for h in s.hof], [str(i) for i in s.population]


def test_kernel_noise_does_not_change_the_run(monkeypatch):
    assert run(jitter=False) == run(jitter=True)
    monkeypatch.setattr(result, "FITNESS_RESOLUTION", 1e-12)  # raw floats decide: it changes
    assert run(jitter=False) != run(jitter=True)
