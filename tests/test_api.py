"""The Python API: cheap import, the CLI's defaults, prune / compare / search as functions."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gpsearch
from gpsearch import api
from gpsearch.cli import build_parser
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.jobs.search.plan import DEFAULTS
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama, write_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_import_gpsearch_does_not_import_torch():
    code = ("import sys, gpsearch; assert 'torch' not in sys.modules; "
            "import gpsearch.engine.loop; assert 'torch' not in sys.modules; "
            "assert callable(gpsearch.search) and callable(gpsearch.compare); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-500:]


def test_search_settings_defaults_are_search_run_defaults():
    s = api.SearchSettings()
    assert {f.name for f in dataclasses.fields(s)} == set(DEFAULTS)
    assert dataclasses.asdict(s) == DEFAULTS


def _defaults(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.dest: a.default for a in sub._actions}


def test_prune_and_compare_cli_defaults_are_the_api_defaults():
    d, p = _defaults("prune"), api.PruneConfig()
    for k in ("sparsity", "pattern", "scope", "features", "model", "dtype", "device",
              "cache_dir", "save_format"):
        assert d[k] == getattr(p, k), k
    assert (d["nsamples"], d["seqlen"], d["seed"], d["batch_size"], d["data"]) == (
        p.calib.nsamples, p.calib.seqlen, p.calib.seed, p.calib.batch_size, p.calib.data)
    d, c = _defaults("compare"), api.CompareConfig()
    assert d["methods"] == ",".join(c.methods) and d["pattern"] == ",".join(c.patterns)
    assert d["sparsity"] == ",".join(f"{s:g}" for s in c.sparsities)
    assert d["tree_features"] == c.tree_features and d["model"] == c.model


def test_search_wraps_run_search(monkeypatch):
    calls = []
    monkeypatch.setattr("gpsearch.jobs.search.run.run_search",
                        lambda given, out=None, resume=None: calls.append((given, out, resume)))
    gpsearch.search(api.SearchSettings(population=8), out="runs/x", generations=3)
    given, out, _ = calls[-1]
    assert given == {**DEFAULTS, "population": 8, "generations": 3} and out == "runs/x"
    gpsearch.search(resume="runs/x", generations=5)  # a resumed run gets only what changed
    assert calls[-1] == ({"generations": 5}, None, "runs/x")
    with pytest.raises(UserError, match="unknown search settings"):
        gpsearch.search(generation=3)


def test_search_returns_the_real_result(tokenizer, tmp_path):
    """gpsearch.search on a tiny saved model: the returned result is the run's own (its run
    directory, the best tree of best_tree.json, the test rows of summary.md)."""
    from gpsearch.tree import load_tree, parse_prefix, registry_for

    model_dir = tmp_path / "model"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    res = gpsearch.search(model=str(model_dir), data=corpus, nsamples=4, seqlen=16,
                          batch_size=4, stages="32:1", test_windows=4, population=4,
                          offspring=4, elite=2, generations=1, seed=1, tune=0, robustness=0,
                          cache_dir=str(tmp_path / "cache"), fitness_nsamples="",
                          seed_trees=["wanda"], funnel="", out=str(out))
    assert set(res) == {"run_dir", "best", "rows", "summary"}
    assert Path(res["run_dir"]) == out
    assert (out / "summary.md").read_text().strip() == res["summary"].strip()
    best = load_tree(str(out / "best_tree.json"))
    assert parse_prefix(res["best"]["expr"], registry_for(best)) == best
    assert res["best"]["expr"] in [r["method"] for r in res["rows"]]
    assert all(r["evaluation"]["split"] == "test" for r in res["rows"])


def _evaluator(corpus, tokenizer, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16)
    return Evaluator(calib=calib, cache_dir=tmp_path / "c", lm=loaded(make_llama(), tokenizer))


def test_prune_function_records_saves_and_restores(corpus, tokenizer, tmp_path):
    ev = _evaluator(corpus, tokenizer, tmp_path)
    dense = {n: lin.weight.detach().clone() for n, lin in ev.linears.items()}
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3)
    cfg = gpsearch.PruneConfig(tree="mul(W, sqrt(X))", pattern="2:4", evaluation=evc,
                               save=str(tmp_path / "m"), save_format="compressed-tensors")
    rec = gpsearch.prune(cfg, evaluator=ev, log=lambda s: None)
    assert rec["achieved_sparsity"] == pytest.approx(0.5) and rec["ppl"] > 1
    assert rec["config"]["pattern"] == "2:4" and rec["saved"]["compression_format"] == \
        "sparse-24-bitmask"
    assert json.loads((tmp_path / "m" / "gpsearch_record.json").read_text())["ppl"] == rec["ppl"]
    assert all((ev.linears[n].weight == w).all() for n, w in dense.items())  # restored
    with pytest.raises(UserError):
        gpsearch.prune(cfg, evaluator=ev, save=None, sparsity=1.5)


def test_compare_function_with_zero_shot(corpus, tokenizer, tmp_path):
    ev = _evaluator(corpus, tokenizer, tmp_path)
    cfg = gpsearch.CompareConfig(methods=["magnitude"], calib=ev.calib, out=str(tmp_path / "o"),
                                 evaluation=EvalConfig(data=corpus, split="test", seqlen=16,
                                                       max_windows=2),
                                 zero_shot=["wiki_lastword"], zero_shot_limit=4)
    res = gpsearch.compare(cfg, evaluator=ev, progress=False)
    assert [r["method"] for r in res["rows"]] == ["dense", "magnitude"]
    for r in res["rows"]:
        z = r["zero_shot"]["wiki_lastword"]
        assert z["n"] == 4 and 0.0 <= z["acc"] <= 1.0 and "acc_stderr" in z
    md = Path(res["files"]["md"]).read_text()
    assert "## Zero-shot accuracy" in md and "wiki_lastword (n=4)" in md
    header = Path(res["files"]["csv"]).read_text().splitlines()[0].split(",")
    assert "zs_wiki_lastword_acc" in header and "zs_wiki_lastword_acc_stderr" in header
