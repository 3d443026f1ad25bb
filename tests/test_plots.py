"""The pictures: numbers behind the progress plot, zoom that ignores outliers, files written."""

import math

import pytest

from gpsearch.engine.result import MAX_FITNESS
from gpsearch.plots import (
    PENALTY_FLOOR,
    plot_allocation,
    plot_ppl_vs_sparsity,
    plot_progress,
    progress_series,
    zoom_range,
)


def _records():
    recs = [{"gen": 0, "expr": "mul(W, sqrt(X))", "fitness": 50.0, "hit": None, "op": "seed"},
            {"gen": 0, "expr": "W", "simplified": "W", "fitness": 60.0, "hit": None, "op": "seed"},
            {"gen": 0, "expr": "exp(G)", "fitness": 1.6e4, "hit": None, "op": "init"},
            {"gen": 0, "expr": "div(W, W)", "fitness": 1.0e6, "hit": None, "op": "init"},
            {"gen": 1, "expr": "W", "fitness": 60.0, "hit": "key", "op": "mutation"},
            {"gen": 1, "expr": "a", "fitness": 49.0, "hit": None, "op": "crossover"},
            {"gen": 1, "expr": "b", "fitness": float("nan"), "hit": None, "op": "mutation"}]
    return recs


def test_progress_series_counts_evaluations_not_cache_hits():
    s = progress_series(_records())
    assert s["x"] == [1, 2, 3, 4, 5, 6]
    assert s["seeds"] == {"mul(W, sqrt(X))": 50.0, "W": 60.0}
    assert s["best"] == [50.0, 50.0, 50.0, 50.0, 49.0, 49.0]
    assert s["gen_end"] == {0: 4, 1: 6}
    assert s["median"][0] == pytest.approx(0.5 * (60.0 + 1.6e4))
    assert math.isinf(s["fitness"][5])


def test_zoom_is_set_by_seeds_and_best_not_by_outliers():
    lo, hi = zoom_range(50.0, 49.0)
    assert -4.0 < lo < -2.0 and hi == 10.0  # the 1.6e4 (+31900%) candidate does not set it
    lo, hi = zoom_range(50.0, 40.0)  # a 20% improvement: the range follows it
    assert lo < -20.0 and hi == pytest.approx(40.0)


def test_files_are_written(tmp_path):
    assert plot_progress(_records(), tmp_path / "p.png").stat().st_size > 1000
    assert plot_progress([], tmp_path / "e.png").stat().st_size > 0
    rows = [{"method": "dense", "pattern": "-", "sparsity": 0.0, "ppl": 16.0,
             "evaluation": {"split": "test", "seqlen": 256}},
            {"method": "wanda", "pattern": "unstructured", "sparsity": 0.5, "ppl": 40.0},
            {"method": "wanda", "pattern": "unstructured", "sparsity": 0.7, "ppl": 400.0},
            {"method": "x", "pattern": "unstructured", "sparsity": 0.7, "ppl": None}]
    assert plot_ppl_vs_sparsity(rows, tmp_path / "s.png").stat().st_size > 1000
    assert plot_ppl_vs_sparsity(rows[:1], tmp_path / "none.png") is None
    assert plot_allocation({"l0.q": 0.4, "l0.k": 0.6}, tmp_path / "a.png").stat().st_size > 1000


def test_the_failure_floor_is_the_engines_fitness_cap():
    assert PENALTY_FLOOR == MAX_FITNESS  # plots may not import the engine: the two must agree
