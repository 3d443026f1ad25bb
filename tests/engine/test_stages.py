"""Stage parsing and the staged, fingerprinted evaluation of the searcher (fake backends)."""

import math

import pytest

from gpsearch.engine import checkpoint
from gpsearch.engine.loop import SearchConfig, Searcher, TreeServices
from gpsearch.engine.result import EvalResult
from gpsearch.engine.space import load_space
from gpsearch.errors import UserError
from gpsearch.fitness.stages import parse_stages, promoted, score_of, stages_text

SPACE = load_space("prunerzero")
SEEDS = ["mul(W, sqrt(X))", "W", "mul(W, G)", "X"]


def test_parse_stages():
    st = parse_stages("1024:1,4096:0.5,16384:0.25", 256)
    assert [(s.windows, s.fraction) for s in st] == [(4, 1.0), (16, 0.5), (64, 0.25)]
    assert stages_text(st, 256) == "1024:1,4096:0.5,16384:0.25"
    for bad in ("", "100:1", "1024:0.5", "1024:1,512:0.5", "1024:1,4096:2", "a:b",
                "1024:1,4096:0.5,8192:0.75"):
        with pytest.raises(UserError):
            parse_stages(bad, 256)
    assert promoted(8, 0.25) == 2 and promoted(3, 0.25) == 1 and promoted(0, 0.5) == 0
    assert promoted(12, 0.125) == 1 and promoted(16, 0.125) == 2


class WindowBackend:
    """Per-window values that depend on the tree (its length) and the window index, with
    fingerprints that merge trees of equal text length (a stand-in for equal masks)."""

    def __init__(self):
        self.calls = []

    def value(self, expr, w):
        return math.log(10 + len(expr)) + 0.01 * ((len(expr) * 7 + w) % 5)

    def fingerprint_many(self, exprs):
        return [f"fp{len(e)}" for e in exprs]

    def evaluate_many(self, exprs, windows=None):
        a, b = windows
        self.calls.append((tuple(exprs), a, b))
        out = []
        for e in exprs:
            nll = [self.value(e, w) for w in range(a, b)]
            out.append(EvalResult(expr=e, fitness=score_of("ppl", nll), ppl=score_of("ppl", nll),
                                  extra={"nll": nll}))
        return out


def make(backend, **kw):
    cfg = SearchConfig(population=6, offspring=6, elite=2, seed=3,
                       stages=((2, 1.0), (5, 0.5), (9, 0.25)), **kw)
    return Searcher(SPACE, backend, cfg, TreeServices(), SEEDS)


def test_staged_scores_selection_on_stage_one_hall_on_the_last():
    be = WindowBackend()
    s = make(be)
    records = []
    s.on_evaluation.append(records.append)
    s.run(3)
    # windows are never scored twice: stage k only scores [n_{k-1}, n_k)
    assert {(a, b) for _, a, b in be.calls} <= {(0, 2), (2, 5), (5, 9)}
    seen = {}
    for exprs, a, b in be.calls:
        for e in exprs:
            assert seen.get(e, 0) == a  # each tree's windows are contiguous from 0
            seen[e] = b
    for ind in s.population:  # selection fitness: stage 1 (2 windows) for every member
        rec = s.cache[ind.key]
        if "stages" in rec:
            assert ind.fitness == rec["stages"][0]["score"] and rec["stages"][0]["windows"] == 2
    for h in s.hof:  # hall of fame: only trees with all 9 windows, ranked by that score
        rec = s.cache[h["key"]]
        assert h["windows"] == 9 and h["fitness"] == rec["stages"][-1]["score"]
        nll = [be.value(rec["expr"], w) for w in range(9)]
        assert h["fitness"] == pytest.approx(math.exp(sum(nll) / 9))
    assert [h["fitness"] for h in s.hof] == sorted(h["fitness"] for h in s.hof)
    # per generation, at most ceil(fraction * new) trees were promoted to each later stage
    gen0 = [c for c in be.calls[:3]]
    assert len(gen0[1][0]) <= math.ceil(len(gen0[0][0]) * 0.5)
    assert len(gen0[2][0]) <= math.ceil(len(gen0[0][0]) * 0.25)
    staged = [r for r in records if r.get("stages")]
    assert staged and all(r["stages"][0]["windows"] == 2 for r in staged)


def test_fingerprint_hits_share_the_record_and_are_counted():
    be = WindowBackend()
    s = make(be)
    records = []
    s.on_evaluation.append(records.append)
    s.run(2)
    fp_hits = [r for r in records if r["hit"] == "fingerprint"]
    assert s.counters["fp_hits"] == len(fp_hits) > 0
    for r in fp_hits:
        rec = s.cache[r["key"]]
        assert rec["fitness"] == s.cache[rec["via"]]["fitness"]
        assert len(rec["expr"]) == len(s.cache[rec["via"]]["expr"])  # same "mask"


class OneBadFingerprint(WindowBackend):
    """Fingerprinting fails for trees of one text length: a batch holding one fails whole."""

    def __init__(self, bad_len):
        super().__init__()
        self.bad_len = bad_len

    def fingerprint_many(self, exprs):
        if any(len(e) == self.bad_len for e in exprs):
            raise RuntimeError("probe failed\nsecond line")
        return super().fingerprint_many(exprs)


def test_a_failing_fingerprint_is_logged_counted_and_keeps_dedup_for_the_others():
    ref = make(WindowBackend())
    ref.run(2)
    bad_len = len(ref.seeds[0])
    s = make(OneBadFingerprint(bad_len))
    records = []
    s.on_evaluation.append(records.append)
    s.run(2)
    failed = [r for r in records if "fingerprint_error" in r]
    assert failed and all(len(r["expr"]) == bad_len or len(r["simplified"]) == bad_len
                          for r in failed)
    assert all(r["fingerprint_error"] == "RuntimeError: probe failed" for r in failed)
    assert s.counters["fp_failed"] == len(failed)
    # the other trees of those generations were still deduplicated by their masks
    assert s.counters["fp_hits"] > 0
    assert any(r["hit"] == "fingerprint" for r in records)


def test_staged_resume_equals_uninterrupted(tmp_path):
    a = make(WindowBackend(), immigrants=2)
    a.run(4)
    b = make(WindowBackend(), immigrants=2)
    b.run(2)
    checkpoint.save(tmp_path / "cp.json", b)
    c = make(WindowBackend(), immigrants=2)
    checkpoint.restore(c, checkpoint.load(tmp_path / "cp.json"))
    c.run(2)
    assert [str(i) for i in a.population] == [str(i) for i in c.population]
    assert a.hof == c.hof and a.logbook == c.logbook and a.lineage == c.lineage


def test_diversity_statistics_and_immigrants():
    s = make(WindowBackend(), immigrants=2)
    records = []
    s.on_evaluation.append(records.append)
    stats = s.run(3)
    assert sum(r["op"] == "immigrant" for r in records) == 2 * 2
    for st in stats:
        assert 1 <= st["distinct_masks"] <= 6 and 0 < st["top_root_share"] <= 1
        assert st["gap"] >= 0 and st["top_root"]
    pop_fps = {s.cache[i.key].get("fingerprint") or i.key for i in s.population}
    assert stats[-1]["distinct_masks"] == len(pop_fps)
    seed_roots = {r for i in s.population for r in s.lineage[i.key]}
    assert seed_roots <= {"seed0", "seed1", "seed2", "seed3", "init", "immigrant"}
