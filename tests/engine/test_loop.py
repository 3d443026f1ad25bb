"""The searcher with a fake, cheap, deterministic backend: penalties, dedup, hit rate, seed
determinism, worker-count independence and checkpoint/resume equality."""

import json
import subprocess
import sys

import pytest
import torch

from gpsearch.engine import checkpoint
from gpsearch.engine.loop import SearchConfig, Searcher, TreeServices
from gpsearch.engine.primitives import parse_expr
from gpsearch.engine.result import PENALTY, EvalResult, fitness_of
from gpsearch.engine.rundir import RunDir
from gpsearch.engine.space import load_space
from gpsearch.engine.variation import VariationConfig
from gpsearch.errors import UserError
from gpsearch.pruning.fingerprint import ExprServices
from gpsearch.pruning.masks import make_mask, parse_pattern
from gpsearch.tree import EXTENDED, PRUNERZERO, check_score, evaluate, load_tree, parse_prefix

PATTERN = parse_pattern("unstructured")
SPACE = load_space("prunerzero")


pytestmark = pytest.mark.usefixtures("one_thread")


class FakeBackend:
    """Fitness = 10 + the output error of pruning 50% by the tree on fixed small tensors
    (W, X, G), a cheap stand-in for a perplexity. Records every batch it receives; trees
    containing ``raise_on`` make it raise (like a crashing worker)."""

    def __init__(self, raise_on=None, chunk=None):
        g = torch.Generator().manual_seed(0)
        w = torch.randn(16, 32, generator=g).abs()
        x = torch.exp(torch.randn(1, 32, generator=g) * 1.5)
        self.t = {"W": w, "X": x, "G": w * x.sqrt() * (torch.rand(16, 32, generator=g) + 0.5)}
        self.full = float((w * x.sqrt()).sum())
        self.batches, self.raise_on, self.chunk = [], raise_on, chunk

    def evaluate_many(self, exprs):
        self.batches.append(list(exprs))
        if self.raise_on and any(self.raise_on in e for e in exprs):
            raise RuntimeError("worker died")
        if self.chunk:  # like several workers: pieces evaluated separately, in reverse order
            parts = [exprs[i:i + self.chunk] for i in range(0, len(exprs), self.chunk)]
            done = {id(p): [self._one(e) for e in p] for p in reversed(parts)}
            return [r for p in parts for r in done[id(p)]]
        return [self._one(e) for e in exprs]

    def _one(self, expr):
        try:
            score = check_score(evaluate(parse_prefix(expr, EXTENDED), self.t), (16, 32))
        except Exception as e:  # noqa: BLE001
            return EvalResult.failure(expr, str(e))
        mask = make_mask(score.contiguous(), 0.5, PATTERN)
        err = float((self.t["W"] * self.t["X"].sqrt() * mask).sum()) / self.full
        ppl = 10.0 + 100.0 * err
        return EvalResult(expr=expr, fitness=fitness_of(ppl), ppl=ppl, seconds=0.01)


def services():
    return ExprServices(PRUNERZERO, 0.5, PATTERN)


def searcher(seed=0, backend=None, seeds=(), population=8, offspring=8, svc="real"):
    cfg = SearchConfig(population=population, offspring=offspring, elite=4, seed=seed)
    return Searcher(SPACE, backend or FakeBackend(), cfg,
                    services() if svc == "real" else TreeServices(), list(seeds))


def strip_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def snapshot(s):
    return ([(str(i), i.fitness, i.key) for i in s.population], s.logbook, s.hof, s.cache,
            s.rng.getstate(), s.counters)


def test_bad_trees_get_the_penalty_and_the_search_goes_on():
    log = []
    s = searcher(backend=FakeBackend(raise_on="tanh"), svc="none",
                 seeds=["sub(W, W)", "tanh(W)", "mul(W, sqrt(X))"])
    s.on_evaluation.append(log.append)
    s.run(4)
    by_expr = {r["simplified"]: r for r in log}
    assert (by_expr["sub(W, W)"]["fitness"] == PENALTY
            and "constant" in by_expr["sub(W, W)"]["error"])
    assert by_expr["tanh(W)"]["fitness"] == PENALTY and "worker died" in by_expr["tanh(W)"]["error"]
    assert s.counters["failed"] >= 2 and s.generation == 3
    assert all(r["fitness"] < float("inf") for r in log)


def test_invalid_trees_are_rejected_on_the_probes_without_a_forward_pass():
    backend, log = FakeBackend(), []
    s = searcher(backend=backend, seeds=["sub(W, W)", "sub(G, G)", "mul(W, sqrt(X))"])
    s.on_evaluation.append(log.append)
    s.step()
    sent = [e for b in backend.batches for e in b]
    assert "sub(W, W)" not in sent and "sub(G, G)" not in sent
    bad = [r for r in log if r["simplified"] in ("sub(W, W)", "sub(G, G)")]
    assert all(r["hit"] == "invalid" and r["fitness"] == PENALTY and r["error"] for r in bad)


def test_dedup_by_key_and_by_fingerprint():
    backend, log = FakeBackend(), []
    s = searcher(backend=backend, seeds=["mul(W, sqrt(X))", "sqrt(mul(sqr(W), X))"])
    s.on_evaluation.append(log.append)
    s.step()
    assert [r["hit"] for r in log[:2]] == [None, "fingerprint"]  # same masks, other key
    assert log[0]["fitness"] == log[1]["fitness"] and backend.batches[0][0] == "mul(W, sqrt(X))"
    variants = ["mul(sqrt(X), W)", "neg(neg(mul(W, sqrt(X))))", "mms(mul(W, sqrt(X)))",
                "mul(W, sqrt(X))", "sqrt(mul(X, sqr(W)))"]
    s._evaluate([s._prepare(parse_expr(e, s.pset)) for e in variants], 1)
    assert [r["hit"] for r in log[-5:]] == ["key"] * 5
    assert log[-4]["simplified"] == "mul(W, sqrt(X))"  # OOS first, then the key
    s.run(4)
    sent = [e for b in backend.batches for e in b]
    svc = services()
    assert len(sent) == len(set(map(svc.key, sent))) == len(set(map(svc.fingerprint, sent)))
    c = s.counters
    assert c["candidates"] == c["evaluated"] + c["key_hits"] + c["fp_hits"] + c["invalid"]
    assert c["evaluated"] == len(sent) and 0 < s.logbook[-1]["hit_rate"] < 1


def test_elitism_population_size_and_hall_of_fame():
    s = searcher(seeds=["mul(W, sqrt(X))"])
    stats = s.run(6)
    bests = [r["best"] for r in stats]
    assert all(b2 <= b1 for b1, b2 in zip(bests, bests[1:]))
    assert all(len(s.population) == 8 for _ in [0]) and s.generation == 5
    fits = [h["fitness"] for h in s.hof]
    assert fits == sorted(fits) and s.best() == s.hof[0] and len(s.hof) <= 10
    assert len({h["key"] for h in s.hof}) == len(s.hof)
    assert s.best()["fitness"] <= s.population[0].fitness + 1e-12
    assert s.best()["fitness"] < 50  # the fake landscape is learnable


def test_same_seed_same_run_other_seed_other_run():
    runs = []
    for seed in (3, 3, 4):
        log = []
        s = searcher(seed=seed)
        s.on_evaluation.append(log.append)
        s.run(4)
        runs.append((snapshot(s), strip_seconds(log)))
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_result_does_not_depend_on_the_number_of_workers():
    one, many = searcher(seed=1), searcher(seed=1, backend=FakeBackend(chunk=3))
    one.run(4)
    many.run(4)
    assert snapshot(one) == snapshot(many)


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    full = searcher(seed=2, seeds=["mul(W, sqrt(X))"])
    RunDir.create(tmp_path / "a", {"test": 1}).attach(full, plot=False)
    full.run(4)

    first = searcher(seed=2, seeds=["mul(W, sqrt(X))"])
    run_b = RunDir.create(tmp_path / "b", {"test": 1})
    run_b.attach(first, plot=False)
    first.run(2)
    # "kill" in the middle of generation 2: its first records were logged, no checkpoint yet
    run_b.log({"gen": 2, "expr": "W", "fitness": 1.0})
    del first

    resumed = searcher(seed=2, seeds=["mul(W, sqrt(X))"])
    run_b = RunDir.open(tmp_path / "b")
    checkpoint.restore(resumed, run_b.checkpoint())
    assert resumed.generation == 1
    run_b.truncate_log(resumed.generation)
    run_b.attach(resumed, plot=False)
    resumed.run_until(3)

    assert snapshot(resumed) == snapshot(full)
    logs = [strip_seconds(json.loads(line) for line in (tmp_path / d / "log.jsonl").open())
            for d in ("a", "b")]
    assert logs[0] == logs[1]
    assert (tmp_path / "a" / "hall_of_fame.csv").read_text() == \
        (tmp_path / "b" / "hall_of_fame.csv").read_text()
    cp = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert cp["generation"] == 3 and isinstance(cp["rng"][1], list)


def test_resume_refuses_another_config(tmp_path):
    s = searcher(seed=2)
    s.step()
    data = checkpoint.capture(s)
    with pytest.raises(Exception, match="another search config"):
        checkpoint.restore(searcher(seed=3), json.loads(json.dumps(data)))


def test_run_directory_artefacts(tmp_path):
    s = searcher(seeds=["mul(W, sqrt(X))"])
    run = RunDir.create(tmp_path / "r", {"x": 1})
    run.attach(s, plot=False)
    s.run(2)
    run.write_progress(s.logbook)
    best = run.write_best_tree(s.best()["expr"], s.pset)
    assert load_tree(str(best), PRUNERZERO) == parse_prefix(s.best()["expr"], PRUNERZERO)
    for name in ("config.json", "checkpoint.json", "log.jsonl", "hall_of_fame.csv", "progress.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    with pytest.raises(Exception, match="not empty"):
        RunDir.create(tmp_path / "r", {})


def test_oos_replaces_the_child_and_logs_the_original():
    log = []
    s = searcher(seeds=["sqrt(sqr(neg(W)))"])
    s.on_evaluation.append(log.append)
    s.step()
    rec = next(r for r in log if r["expr"] == "sqrt(sqr(neg(W)))")
    assert rec["simplified"] == "W" and any(str(i) == "W" for i in s.population)


def test_search_package_never_imports_torch_or_ray():
    code = ("import sys, gpsearch.engine.loop, gpsearch.engine.rundir, gpsearch.engine.checkpoint,"
            " gpsearch.engine.variation, gpsearch.engine.space; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_init_population_evaluates_more_trees_and_keeps_the_best():
    log = []
    cfg = SearchConfig(population=8, offspring=8, elite=4, seed=5, init_population=24)
    s = Searcher(SPACE, FakeBackend(), cfg, services())
    s.on_evaluation.append(log.append)
    s.step()
    assert len(log) == 24 and len(s.population) == 8
    valid = sorted(r["fitness"] for r in log)
    assert s.population[0].fitness == valid[0]  # the best of the 24 survives
    assert [i.fitness for i in s.population[:4]] == valid[:4]  # and the elite
    with pytest.raises(UserError, match="init_population"):
        SearchConfig(population=8, init_population=4)


def test_niches_keep_the_best_tree_of_an_input_set_the_elite_lacks():
    # The elite (2) is W-only; X-reading trees rank below every W-only tree in this pool, so
    # elitism + a strong tournament drop them; a niche slot keeps the best X-reading one.
    strong = VariationConfig(tournament=8)
    cfg = SearchConfig(population=4, offspring=4, elite=2, seed=0, niches=1, variation=strong)
    s = Searcher(SPACE, FakeBackend(), cfg, TreeServices())
    pool = []
    for expr, fit in [("W", 1.0), ("sqr(W)", 1.1), ("abs(W)", 1.2), ("exp(W)", 1.3),
                      ("log(W)", 1.4), ("mul(W, X)", 5.0), ("add(W, X)", 6.0), ("X", 7.0)]:
        ind = s._prepare(parse_expr(expr, s.pset))
        ind.fitness = fit
        pool.append(ind)
    kept = [str(i) for i in s._survivors(pool)]
    assert kept[:2] == ["W", "sqr(W)"] and "mul(W, X)" in kept and len(kept) == 4
    assert "add(W, X)" not in kept  # one slot: only the best of the niche {W, X}
    plain = Searcher(SPACE, FakeBackend(), SearchConfig(population=4, offspring=4, elite=2,
                                                        seed=0, variation=strong), TreeServices())
    assert all("X" not in e for e in map(str, plain._survivors(pool)))
    with pytest.raises(UserError, match="niches"):
        SearchConfig(population=4, elite=2, niches=3)
