"""The robust pick (`--pick-conditions`, `--pick-reduce`): the hall of fame re-scored under other
evaluation conditions, the tree with the best worst-case (or mean) score chosen."""

import json
from types import SimpleNamespace

import pytest

from gpsearch.cli import main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.engine.result import EvalResult
from gpsearch.jobs.search import pick as search_pick
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import EXTENDED, load_tree, parse_prefix
from gpsearch.workers.serial import SerialBackend
from tests.jobs.search.test_run import tiny  # noqa: F401 - the tiny model + corpus CLI fixture


def _arg(args, name):
    return args[args.index(name) + 1]


def _result(expr, kl):
    return EvalResult(expr=expr, fitness=sum(kl) / len(kl), ppl=2.0, seconds=0.0,
                      extra={"kl": kl, "nll": [0.5] * len(kl)})


class _Backend:
    """A condition's backend: fixed per-window KL per tree."""

    def __init__(self, kl):
        self.kl, self.calls = kl, []

    def evaluate_many(self, exprs, windows):
        self.calls.append((list(exprs), windows))
        return [_result(e, self.kl[e]) for e in exprs]


class _FingerprintedBackend(_Backend):
    def __init__(self, kl, fps):
        super().__init__(kl)
        self.fps = fps

    def fingerprint_many(self, exprs):
        return [self.fps[e] for e in exprs]


def test_pick_scores_equal_masks_once_and_invalid_trees_as_inf(monkeypatch):
    cond = _FingerprintedBackend({"a": [0.4, 0.4], "b": [9.0, 9.0], "c": [0.3, 0.3]},
                                 {"a": "m1", "b": "m1", "c": "invalid: constant"})
    monkeypatch.setattr(search_pick, "_condition_backend", lambda p, ev, c: cond)
    cache = {k: {"expr": k, "values": {"kl": [v, v], "nll": [0.5, 0.5]}}
             for k, v in (("a", 0.2), ("b", 0.1), ("c", 0.05))}
    searcher = SimpleNamespace(cache=cache, _run_backend=lambda *a: pytest.fail("cached"))
    hof = [{"key": e, "expr": e} for e in "abc"]
    out = search_pick.robust_pick(_plan(), SimpleNamespace(evaluator=object()), searcher, hof, 2)
    assert cond.calls == [(["a"], (0, 2))]  # b has a's masks, c is invalid: no forward pass
    by = {t["expr"]: t["scores"]["nsamples=32"] for t in out["trees"]}
    assert by["a"] == by["b"] == pytest.approx(0.4) and by["c"] == float("inf")
    assert out["winner"]["expr"] == "a"  # a, b tie at 0.4 worst: the earlier


def _plan(conditions="nsamples=32", reduce="max", multi=()):
    return SimpleNamespace(settings={"pick_conditions": conditions, "pick_reduce": reduce},
                           search=SimpleNamespace(fitness="kl"), conditions=list(multi))


def test_pick_takes_the_best_worst_case_and_reuses_the_cached_baseline(monkeypatch):
    # baseline: a best (0.10), b (0.20), c (0.30); under the condition a collapses (0.50)
    cond = _Backend({"a": [0.5, 0.5], "b": [0.2, 0.22], "c": [0.3, 0.3]})
    monkeypatch.setattr(search_pick, "_condition_backend", lambda p, ev, c: cond)
    runs = []

    def run_backend(exprs, windows):  # only c has no cached values on the 2 windows
        runs.append((list(exprs), windows))
        return [_result(e, [0.3, 0.3]) for e in exprs]

    cache = {"ka": {"expr": "a", "values": {"kl": [0.1, 0.1, 9.0], "nll": [0.5] * 3}},
             "kb": {"expr": "b", "values": {"kl": [0.2, 0.2], "nll": [0.5] * 2}},
             "kc": {"expr": "c", "values": {"kl": [0.3], "nll": [0.5]}}}
    searcher = SimpleNamespace(cache=cache, _run_backend=run_backend)
    hof = [{"key": "k" + e, "expr": e, "fitness": f} for e, f in (("a", .1), ("b", .2), ("c", .3))]
    backend = SimpleNamespace(evaluator=object())
    out = search_pick.robust_pick(_plan(), backend, searcher, [hof[0]] + hof, 2)
    assert runs == [(["c"], (0, 2))] and cond.calls == [(["a", "b", "c"], (0, 2))]
    by = {t["expr"]: t for t in out["trees"]}
    assert by["a"]["scores"] == {"baseline": pytest.approx(0.1), "nsamples=32": pytest.approx(0.5)}
    assert by["b"]["combined"] == pytest.approx(0.21) and by["c"]["combined"] == pytest.approx(0.3)
    assert out["winner"]["expr"] == "b" and out["winner"]["key"] == "kb" and out["was"] == "a"
    md = search_pick.pick_markdown(out)
    assert "`b` **(chosen)**" in md and "`a`, was replaced" in md
    # the mean instead of the worst: a (0.3) loses to b (0.205), c (0.3) ties a: the earlier wins
    mean = search_pick.robust_pick(_plan(reduce="mean"), backend, searcher, hof, 2)
    assert {t["expr"]: t["combined"] for t in mean["trees"]} == {
        "a": pytest.approx(0.3), "b": pytest.approx(0.205), "c": pytest.approx(0.3)}
    assert mean["winner"]["expr"] == "b"


def test_pick_is_off_or_skipped_and_says_why(monkeypatch):
    monkeypatch.setattr(search_pick, "_condition_backend", lambda *a: pytest.fail("no pick"))
    hof = [{"expr": "a"}, {"expr": "b"}]
    searcher = SimpleNamespace(cache={}, _run_backend=lambda *a: pytest.fail("no pick"))
    resident = SimpleNamespace(evaluator=object())
    assert search_pick.robust_pick(_plan(""), resident, searcher, hof, 2) is None
    assert search_pick.robust_pick(_plan(), resident, searcher, hof[:1] * 2, 2) is None
    ray = search_pick.robust_pick(_plan(), SimpleNamespace(), searcher, hof, 2)
    assert "Ray workers" in ray["skipped"] and ray["winner"] is None
    multi = search_pick.robust_pick(_plan(multi=["x"]), resident, searcher, hof, 2)
    assert "multi-condition" in multi["skipped"]
    assert "Not applied" in search_pick.pick_markdown(ray)


def test_pick_conditions_parse_and_refuse():
    assert [c.label() for c in search_pick.pick_conditions("baseline, nsamples=32,G=4")] == \
        ["nsamples=32", "G=4"]
    assert search_pick.pick_conditions("") == []
    for bad in ("pattern=2:4", "model=x", "nsamples=0"):
        with pytest.raises(Exception, match="condition"):
            search_pick.pick_conditions(bad)


def test_search_picks_by_the_worst_condition_end_to_end(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = [a for a in tiny]
    args[args.index("--pick-conditions") + 1] = "nsamples=8"
    assert main(["search", *args, "--population", "6", "--offspring", "6", "--elite", "3",
                 "--generations", "2", "--seed", "2", "--out", str(out), "--robustness", "0",
                 "--report", "none", "--tune", "0",
                 "--funnel", ""]) == 0  # the pick's winner is best_tree.json: no funnel after it
    pick = json.loads((out / "pick.json").read_text())
    cp = json.loads((out / "checkpoint.json").read_text())
    assert pick["conditions"] == ["baseline", "nsamples=8"] and pick["windows"] == 4
    config = json.loads((out / "config.json").read_text())
    assert pick["commit"] == config["commit"] and pick["dirty"] == config["dirty"]
    assert [t["expr"] for t in pick["trees"]] == list(dict.fromkeys(h["expr"] for h in cp["hof"]))
    for t in pick["trees"]:
        assert t["combined"] == pytest.approx(max(t["scores"].values()))
    winner = min(pick["trees"], key=lambda t: (t["combined"], t["order"]))
    assert pick["winner"]["expr"] == winner["expr"]
    assert load_tree(str(out / "best_tree.json")) == parse_prefix(winner["expr"], EXTENDED)
    # the condition's scores are the trees' KL with 8-sample features, recomputed here
    calib = CalibConfig(data=_arg(tiny, "--data"), nsamples=4, seqlen=16, batch_size=4)
    ev = EvalConfig(data=calib.data, split="validation", seqlen=16, max_windows=4, batch_size=4)
    evaluator = Evaluator(_arg(tiny, "--model"), calib, cache_dir=_arg(tiny, "--cache-dir"))
    pat = parse_pattern("unstructured", 0.5)
    base = SerialBackend(evaluator, 0.5, pat, ev, fitness="kl")
    eight = SerialBackend(evaluator, 0.5, pat, ev, fitness="kl",
                          feature_calib=CalibConfig(data=calib.data, nsamples=8, seqlen=16,
                                                    batch_size=4))
    for t in pick["trees"][:3]:
        assert eight.evaluate_one(t["expr"]).fitness == pytest.approx(t["scores"]["nsamples=8"],
                                                                       rel=1e-9)
        assert base.evaluate_one(t["expr"]).fitness == pytest.approx(t["scores"]["baseline"],
                                                                      rel=1e-9)
    summary = (out / "summary.md").read_text()
    assert "## Robust pick (baseline, nsamples=8; worst" in summary
    assert f"`{winner['expr']}` **(chosen)**" in summary
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["pick_conditions"] == "nsamples=8"
    assert "robust pick" in config["fitness"]


def test_pick_refusals_write_nothing(tiny, tmp_path, capsys):  # noqa: F811
    base = ["search", *tiny, "--generations", "0", "--out", str(tmp_path / "run")]
    assert main(base + ["--pick-conditions", "pattern=2:4"]) == 2
    assert "pattern cannot be changed here" in capsys.readouterr().err
    assert main(base + ["--pick-reduce", "median"]) == 2
    assert "--pick-reduce must be max or mean" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_from_before_the_pick_resumes_without_it(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = [a for a in tiny]
    args[args.index("--pick-conditions") + 1] = "nsamples=8"
    base = ["search", *args, "--population", "4", "--offspring", "4", "--elite", "2", "--seed", "1",
            "--robustness", "0", "--report", "none", "--tune", "0",
            "--hurdle", "0"]  # the pick needs more trees than a hurdled tiny run evaluates
    assert main(base + ["--generations", "1", "--out", str(out)]) == 0
    assert (out / "pick.json").exists()
    (out / "pick.json").unlink()
    config = json.loads((out / "config.json").read_text())
    for k in ("pick_conditions", "pick_reduce"):  # what an older gpsearch wrote
        del config["settings"][k]
    (out / "config.json").write_text(json.dumps(config))
    assert main(["search", "--resume", str(out), "--generations", "2", "--report", "none"]) == 0
    assert not (out / "pick.json").exists()
    assert "## Robust pick" not in (out / "summary.md").read_text()
