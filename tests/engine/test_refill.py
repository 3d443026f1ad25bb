"""Refill: a generation whose children were hurdled (or were duplicates) breeds more, so that it
still pays about ``offspring`` first-stage evaluations."""

import zlib

import pytest

from gpsearch.engine.loop import SearchConfig, Searcher, TreeServices
from gpsearch.errors import UserError
from tests.engine.test_hurdle import REF
from tests.engine.test_stages import SEEDS, SPACE, WindowBackend


class CoinProxyBackend(WindowBackend):
    """Every tree its own mask fingerprint; the proxy a deterministic coin of the tree's text:
    2.0 (above a 1.2 hurdle) for about half the trees, 1.0 for the others and the reference."""

    def fingerprint_many(self, exprs):
        return [f"fp:{e}" for e in exprs]

    def proxy_many(self, exprs):
        return [1.0 if e == REF or zlib.crc32(e.encode()) % 2 else 2.0 for e in exprs]


def run(refill, gens=4, hurdle=1.2):
    cfg = SearchConfig(population=6, offspring=8, elite=2, seed=5, hurdle=hurdle,
                       hurdle_reference=REF, stages=((2, 1.0), (5, 0.5)), refill=refill)
    s = Searcher(SPACE, CoinProxyBackend(), cfg, TreeServices(), SEEDS)
    records = []
    s.on_evaluation.append(records.append)
    s.run(gens)
    return s, records


def per_gen(records, gen):
    rs = [r for r in records if r["gen"] == gen]
    return len(rs), sum(r["hit"] is None for r in rs)


def test_refill_breeds_until_the_generation_has_its_evaluations():
    off, off_records = run(refill=0)
    on, on_records = run(refill=6)
    for gen in (1, 2):
        proposed_off, evaluated_off = per_gen(off_records, gen)
        proposed_on, evaluated_on = per_gen(on_records, gen)
        assert proposed_off == 8 and evaluated_off < 8  # the hurdle took some: the test's premise
        assert evaluated_on == 8 and proposed_on > 8  # refilled to exactly offspring evaluations
    for gen in (1, 2, 3):  # never more than offspring evaluations in a generation
        assert per_gen(on_records, gen)[1] <= 8
    assert on.counters["candidates"] > off.counters["candidates"]
    assert on.counters["hurdled"] > off.counters["hurdled"]
    assert on.counters["evaluated"] > off.counters["evaluated"]


def test_refill_is_bounded_and_off_by_default():
    assert SearchConfig().refill == 0
    s, records = run(refill=1, hurdle=1.0001)  # about half of the new trees hurdled
    for gen in (1, 2, 3):
        proposed, evaluated = per_gen(records, gen)
        assert 8 < proposed <= 16  # one refill round at most (of at most 8 children)
    with pytest.raises(UserError, match="refill"):
        SearchConfig(refill=-1)


def test_the_same_seed_gives_the_same_refilled_run():
    a, ra = run(refill=4)
    b, rb = run(refill=4)
    assert [r["key"] for r in ra] == [r["key"] for r in rb]
    assert a.best() == b.best()


def test_the_search_plan_refills_by_default_and_refuses_bad_values():
    from gpsearch.jobs.search.plan import LEGACY, plan, resolve_settings

    assert plan(resolve_settings({})).search.refill == 3
    assert LEGACY["refill"] == 0  # a run directory from before refill resumes without it
    for bad in ("2", -1, 1.5, True):
        with pytest.raises(UserError, match="refill"):
            plan({**resolve_settings({}), "refill": bad})
