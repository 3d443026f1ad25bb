"""The hurdle: candidates whose cheap proxy is too high never reach the backend's evaluation."""

import pytest

from gpsearch.engine.loop import SearchConfig, Searcher, TreeServices
from gpsearch.engine.result import PENALTY
from gpsearch.errors import UserError
from tests.engine.test_stages import SEEDS, SPACE, WindowBackend

REF = "mul(W, sqrt(X))"


class ProxyBackend(WindowBackend):
    """Proxy = the tree's text length over the reference's (longer trees look worse)."""

    def __init__(self, fail_call=None):
        super().__init__()
        self.proxied, self.fail_call = [], fail_call

    def proxy_many(self, exprs):
        self.proxied.append(list(exprs))
        if len(self.proxied) - 1 == self.fail_call:
            raise RuntimeError("proxy failed")
        return [len(e) / len(REF) for e in exprs]


def run(backend, hurdle, gens=3, seeds=SEEDS):
    cfg = SearchConfig(population=6, offspring=8, elite=2, seed=5, hurdle=hurdle,
                       hurdle_reference=REF, stages=((2, 1.0), (5, 0.5)))
    s = Searcher(SPACE, backend, cfg, TreeServices(), seeds)
    records = []
    s.on_evaluation.append(records.append)
    s.run(gens)
    return s, records


def evaluated_exprs(backend):
    return {e for exprs, a, _ in backend.calls if a == 0 for e in exprs}


def test_hurdled_candidates_are_logged_with_their_proxy_and_never_evaluated():
    be = ProxyBackend()
    s, records = run(be, hurdle=1.2)
    assert be.proxied[0] == [REF]  # the reference's proxy first, once
    bar = 1.2 * 1.0
    hurdled = [r for r in records if r["hit"] == "hurdle"]
    assert hurdled and s.counters["hurdled"] == len(hurdled)
    for r in hurdled:
        assert r["proxy"] > bar and r["fitness"] == PENALTY and r["op"] != "seed"
        assert r["simplified"] not in evaluated_exprs(be)
    for r in records:  # every evaluated candidate passed the bar (or is a seed)
        if r["hit"] is None:
            assert r["proxy"] == pytest.approx(len(r["simplified"]) / len(REF))
            assert r["proxy"] <= bar or r["op"] == "seed"
    assert s.counters["evaluated"] == sum(r["hit"] is None for r in records)


def test_seeds_pass_the_hurdle():
    long_seed = "mul(add(W, mul(W, X)), sqrt(X))"  # proxy 2.1
    be = ProxyBackend()
    s, records = run(be, hurdle=1.2, gens=1, seeds=SEEDS + [long_seed])
    (rec,) = [r for r in records if r["simplified"] == long_seed]
    assert rec["op"] == "seed" and rec["proxy"] > 1.2
    assert rec["hit"] is None and rec["fitness"] < PENALTY
    assert all(r["op"] != "seed" for r in records if r["hit"] == "hurdle")


def test_a_hurdled_candidate_never_pays_for_its_fingerprint():
    """The proxy comes first: the whole masks under every condition (the fingerprint) are
    computed only for the candidates that pass it."""
    be = ProxyBackend()
    fingerprinted = []
    plain = be.fingerprint_many
    be.fingerprint_many = lambda exprs: (fingerprinted.extend(exprs), plain(exprs))[1]
    s, records = run(be, hurdle=1.2)
    hurdled = {r["simplified"] for r in records if r["hit"] == "hurdle"}
    assert hurdled and s.counters["hurdled"] > 0
    assert not hurdled & set(fingerprinted)
    assert all("fingerprint" not in r for r in records if r["hit"] == "hurdle")
    evaluated = {r["simplified"] for r in records if r["hit"] is None}
    assert evaluated <= set(fingerprinted)


def test_hurdle_off_asks_for_no_proxy_and_same_run_as_a_backend_without_one():
    be = ProxyBackend()
    s, records = run(be, hurdle=0.0)
    plain = WindowBackend()
    t, plain_records = run(plain, hurdle=0.0)
    assert be.proxied == [] and s.counters["hurdled"] == 0
    assert [r["key"] for r in records] == [r["key"] for r in plain_records]
    assert all("proxy" not in r for r in records)


def test_a_failing_proxy_costs_evaluations_not_the_search():
    be = ProxyBackend(fail_call=1)  # call 0: the reference; call 1: generation 0's trees
    s, records = run(be, hurdle=1.2, gens=2)
    assert s.generation == 1
    gen0 = [r for r in records if r["gen"] == 0]
    assert all(r["hit"] != "hurdle" and "proxy" not in r for r in gen0)  # all evaluated
    gen1 = [r for r in records if r["gen"] == 1 and r["hit"] is None]
    assert gen1 and all("proxy" in r for r in gen1)  # the next generation has its proxies


def test_hurdle_below_one_is_refused():
    with pytest.raises(UserError):
        SearchConfig(hurdle=0.5)


def test_the_search_plan_defaults_to_the_measured_hurdle_and_refuses_bad_values():
    from gpsearch.jobs.search.plan import LEGACY, plan, resolve_settings

    assert plan(resolve_settings({})).search.hurdle == 1.25  # bench/hurdle.json's ratio
    assert LEGACY["hurdle"] == 0.0  # a run directory from before the hurdle resumes without it
    for bad in ("abc", None, True, 0.5):
        with pytest.raises(UserError):
            plan({**resolve_settings({}), "hurdle": bad})
