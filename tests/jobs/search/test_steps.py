"""The final stage of a search (`--final-trees N --final-windows W`): the best N trees of the hall
of fame re-scored on more validation windows, the best of them chosen."""

import json
import math

import pytest

from gpsearch.cli import main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import EXTENDED, load_tree, parse_prefix
from gpsearch.workers.serial import SerialBackend
from tests.jobs.search.test_run import tiny  # noqa: F401 - the tiny model + corpus CLI fixture


def _arg(args, name):
    return args[args.index(name) + 1]


def test_final_stage_rescores_the_best_trees_and_picks_the_best(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    assert main(["search", *tiny, "--population", "6", "--offspring", "6", "--elite", "3",
                 "--generations", "2", "--seed", "2", "--out", str(out), "--robustness", "0",
                 "--final-trees", "3", "--final-windows", "6", "--report", "none",
                 "--hurdle", "0",  # the final stage needs 3 trees in the hall
                 "--funnel", ""]) == 0  # its winner is best_tree.json: no funnel after it
    final = json.loads((out / "final_stage.json").read_text())
    assert final["windows"] == 6 and len(final["trees"]) == 3
    assert len({e["expr"] for e in final["trees"]}) == 3
    cp = json.loads((out / "checkpoint.json").read_text())
    assert final["trees"][0]["expr"] == cp["hof"][0]["expr"]  # the last stage's best first
    scored = [e for e in final["trees"] if "final" in e]
    winner = min(scored, key=lambda e: e["final"])
    assert final["winner"]["expr"] == winner["expr"] and final["winner"]["windows"] == 6
    assert load_tree(str(out / "best_tree.json")) == parse_prefix(winner["expr"], EXTENDED)
    # the final scores are the trees' KL on the first 6 validation windows, recomputed here
    calib = CalibConfig(data=_arg(tiny, "--data"), nsamples=4, seqlen=16, batch_size=4)
    ev = EvalConfig(data=calib.data, split="validation", seqlen=16, max_windows=6, batch_size=4)
    be = SerialBackend(Evaluator(_arg(tiny, "--model"), calib, cache_dir=_arg(tiny, "--cache-dir")),
                       0.5, parse_pattern("unstructured", 0.5), ev, fitness="kl")
    for e in scored:
        assert be.evaluate_one(e["expr"]).fitness == pytest.approx(e["final"], rel=1e-9)
    summary = (out / "summary.md").read_text()
    assert "## Final stage (6 windows" in summary and "**(chosen)**" in summary


def test_final_stage_refusals(tiny, tmp_path, capsys):  # noqa: F811
    base = ["search", *tiny, "--generations", "0", "--out", str(tmp_path / "run")]
    assert main(base + ["--final-trees", "3", "--final-windows", "4"]) == 2  # last stage: 4
    assert "above the last stage's 4 windows" in capsys.readouterr().err
    assert main(base + ["--final-trees", "3", "--stages", "none"]) == 2
    assert "needs --stages" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_rerank_final_takes_the_best_on_the_final_windows_even_if_not_first():
    from types import SimpleNamespace

    from gpsearch.engine.result import EvalResult
    from gpsearch.jobs.search.steps import rerank_final, rerank_markdown

    kl = {"a": [0.3, 0.3], "b": [0.1, 0.2], "c": None}  # c fails on the final windows
    calls = []

    def run_backend(exprs, windows):
        calls.append((list(exprs), windows))
        return [EvalResult.failure(e, "boom", 0.0) if kl[e] is None else
                EvalResult(expr=e, fitness=sum(kl[e]) / 2, ppl=2.0, seconds=0.0,
                           extra={"kl": kl[e], "nll": [0.5, 0.5]}) for e in exprs]

    searcher = SimpleNamespace(cfg=SimpleNamespace(fitness="kl"), _run_backend=run_backend)
    hof = [{"expr": e, "fitness": f, "windows": 4} for e, f in (("a", 0.1), ("b", 0.2),
                                                                ("c", 0.3), ("d", 0.4))]
    out = rerank_final(searcher, [hof[0]] + hof, 3, 8)  # the best is hof[0] again: deduplicated
    assert calls == [(["a", "b", "c"], (0, 8))]
    assert out["winner"]["expr"] == "b" and out["winner"]["fitness"] == pytest.approx(0.15)
    assert out["winner"]["windows"] == 8 and out["trees"][2]["error"] == "boom"
    md = rerank_markdown(out, 16)
    assert "`b` **(chosen)**" in md and "error: boom" in md
    assert rerank_final(searcher, [hof[0], hof[0]], 3, 8) is None  # one tree: nothing to rank


def test_rerank_final_scores_only_the_windows_the_search_has_not():
    from types import SimpleNamespace

    from gpsearch.engine.result import EvalResult
    from gpsearch.jobs.search.steps import rerank_final

    later = {"a": [0.5, 0.5], "b": [0.1, 0.1], "t": [0.2, 0.2, 0.2, 0.2]}  # t: tuned, not cached
    calls = []

    def run_backend(exprs, windows):
        calls.append((list(exprs), windows))
        return [EvalResult(expr=e, fitness=0.0, ppl=2.0, seconds=0.0,
                           extra={"kl": later[e], "nll": [1.0] * len(later[e])}) for e in exprs]

    cache = {"ka": {"expr": "a", "values": {"kl": [0.1, 0.1], "nll": [2.0, 2.0]}},
             "kb": {"expr": "b", "values": {"kl": [0.4, 0.4], "nll": [2.0, 2.0]}}}
    searcher = SimpleNamespace(cfg=SimpleNamespace(fitness="kl"), _run_backend=run_backend,
                               cache=cache)
    hof = [{"key": "ka", "expr": "a", "fitness": 0.1, "windows": 2},
           {"key": "kb", "expr": "b", "fitness": 0.4, "windows": 2}]
    out = rerank_final(searcher, [{"expr": "t", "fitness": 0.05}] + hof, 3, 4)
    assert sorted(calls) == [(["a", "b"], (2, 4)), (["t"], (0, 4))]
    final = {e["expr"]: e["final"] for e in out["trees"]}
    assert final["a"] == pytest.approx(0.3) and final["b"] == pytest.approx(0.25)
    assert final["t"] == pytest.approx(0.2) and out["winner"]["expr"] == "t"
    ppl = {e["expr"]: e["final_ppl"] for e in out["trees"]}
    assert ppl["a"] == pytest.approx(math.exp(1.5)) and ppl["t"] == pytest.approx(math.exp(1.0))


def test_the_funnel_after_a_search_writes_its_table_and_the_reported_tree(tiny, tmp_path):  # noqa: F811
    """--funnel FILE: the funnel runs on the finished run directory; best_tree.json is the tree
    it reports (the search's own best, or its seed / a hand tree when the lead is within noise)
    and summary.md says which."""
    conds = tmp_path / "funnel.json"
    conds.write_text(json.dumps({
        "format": "gpsearch-funnel", "version": 1,
        "conditions": [{"condition": "sparsity=0.6"}, {"condition": "pattern=2:4"},
                       {"condition": "seed=1"}],
        "hand_trees": ["wanda", "gblm"], "noise": {"tree": "wanda", "seeds": [1]}}))
    out = tmp_path / "run"
    assert main(["search", *tiny, "--population", "4", "--offspring", "4", "--elite", "2",
                 "--generations", "1", "--seed", "2", "--out", str(out), "--robustness", "0",
                 "--report", "none", "--tune", "0", "--funnel", str(conds)]) == 0
    rec = json.loads((out / "funnel.json").read_text())
    labels = {c["label"] for c in rec["conditions"]}
    assert len(labels) == 4 and all(set(f["ppl"]) == labels for f in rec["finalists"])
    reported = rec["reported"]["expr"]
    assert parse_prefix(reported, EXTENDED) == load_tree(str(out / "best_tree.json"))
    summary = (out / "summary.md").read_text()
    assert "## Funnel" in summary and f"`{reported}`" in summary
    assert (out / "funnel.md").read_text().startswith("## Funnel")
    # a funnel file that does not exist fails before the search starts
    assert main(["search", *tiny, "--generations", "0", "--out", str(tmp_path / "r2"),
                 "--funnel", "no-such-funnel"]) == 2
    assert not (tmp_path / "r2").exists()


def test_the_default_funnel_runs_quick_where_it_applies_and_says_why_not_elsewhere(
        tiny, tmp_path):  # noqa: F811
    """--funnel auto (the default): funnels/quick.json after a uniform unstructured search, and
    best_tree.json is the tree it reports; on a 2:4 search, whose pattern its sparsity
    conditions do not fit, the search still succeeds and the summary says why no funnel ran."""
    common = [*tiny, "--population", "4", "--offspring", "4", "--elite", "2", "--generations",
              "1", "--seed", "2", "--robustness", "0", "--report", "none", "--tune", "0"]
    out = tmp_path / "run"
    assert main(["search", *common, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["settings"]["funnel"] == "auto"
    rec = json.loads((out / "funnel.json").read_text())
    assert rec["conditions_file"].endswith("quick.json")
    assert [c["label"] for c in rec["conditions"]] == [
        "searched", "sparsity=0.6", "sparsity=0.7", "pattern=2:4", "text=held-apart"]
    assert load_tree(str(out / "best_tree.json")) == parse_prefix(rec["reported"]["expr"],
                                                                  EXTENDED)
    assert "## Funnel" in (out / "summary.md").read_text()

    out24 = tmp_path / "run24"
    assert main(["search", *common, "--pattern", "2:4", "--out", str(out24)]) == 0
    assert not (out24 / "funnel.json").exists()
    summary = (out24 / "summary.md").read_text()
    assert "Not run (`--funnel auto`)" in summary and "sparsity=0.6 cannot apply" in summary
