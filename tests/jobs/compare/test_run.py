"""gpsearch compare: failure isolation, config in every row, input checked before any work,
N:M combinations skipped, files written, weights restored between methods."""

import csv
import json

import pytest
import torch

from gpsearch.cli import main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.io import code_version
from gpsearch.jobs.compare import registry
from gpsearch.jobs.compare.registry import register
from gpsearch.jobs.compare.run import CompareConfig, plan, run_compare
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama


@pytest.fixture
def boom():
    def fail(evaluator, sparsity, pattern, **_):
        next(iter(evaluator.linears.values())).weight.data.zero_()  # half-done damage
        raise RuntimeError("boom: simulated failure\nsecond line")

    register("boom", fail, "always fails")
    yield "boom"
    del registry.METHODS["boom"]


def _setup(corpus, tokenizer, tmp_path, **kw):
    calib = CalibConfig(data=corpus, nsamples=8, seqlen=32, batch_size=4)
    ev = EvalConfig(data=corpus, split="test", seqlen=32, max_windows=6)
    cfg = CompareConfig(calib=calib, evaluation=ev, out=str(tmp_path / "out"), model="tiny", **kw)
    evaluator = Evaluator(calib=calib, cache_dir=tmp_path / "cache",
                          lm=loaded(make_llama(), tokenizer))
    return cfg, evaluator


def test_failure_isolated_config_in_every_row_files_written(boom, corpus, tokenizer, tmp_path):
    cfg, evaluator = _setup(corpus, tokenizer, tmp_path,
                            methods=["magnitude", boom, "wanda", "sparsegpt", "mul(W, sqrt(X))",
                                     "wanda-variant"],
                            patterns=["unstructured", "2:4"], sparsities=[0.5, 0.6],
                            options={"sparsegpt": {"blocksize": 16, "mask_blocksize": 16}})
    dense = {n: lin.weight.detach().clone() for n, lin in evaluator.linears.items()}
    res = run_compare(cfg, evaluator=evaluator, progress=False, log=lambda s: None)
    rows = res["rows"]
    assert rows[0]["method"] == "dense" and rows[0]["ppl"] > 1
    by = {(r["method"], r["pattern"], r["sparsity"]): r for r in rows}
    # 2:4 only at 0.5, wanda-variant only unstructured: 6 methods x 2 sparsities + 5 x 2:4
    assert len(rows) == 1 + 6 * 2 + 5
    assert any("2:4 skipped at sparsity 0.6" in n for n in res["notes"])
    assert any("wanda-variant skipped for 2:4" in n for n in res["notes"])
    for key, r in by.items():
        assert r["calibration"] == cfg.calib.to_dict()
        assert r["evaluation"]["split"] == "test" and r["evaluation"]["windows"] == 6
        if key[0] == boom:
            assert r["error"] == "RuntimeError: boom: simulated failure" and r["ppl"] is None
        elif key[0] != "dense":
            assert r["error"] is None and r["ppl"] > 1, key
            assert r["achieved_sparsity"] == pytest.approx(key[2], abs=0.01), key
            assert r["prune_s"] >= 0
    # the tree spelled out equals the wanda method (both sequential); options reach sparsegpt
    assert (by[("mul(W, sqrt(X))", "unstructured", 0.5)]["ppl"]
            == by[("wanda", "unstructured", 0.5)]["ppl"])
    assert by[("sparsegpt", "2:4", 0.5)]["info"]["blocksize"] == 16
    for n, lin in evaluator.linears.items():
        assert torch.equal(lin.weight, dense[n]), n  # restored after every method, even boom
    out = tmp_path / "out"
    md = (out / "results.md").read_text()
    assert "8 samples x 32 tokens" in md and "**test** split" in md and "boom: simulated" in md
    assert (out / "ppl_vs_sparsity.png").stat().st_size > 1000
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and all(t["calib_nsamples"] == "8" for t in table)
    saved = json.loads((out / "results.json").read_text())
    assert saved["final"] and len(saved["rows"]) == len(rows)
    assert saved["commit"] == code_version()["commit"] and "dirty" in saved


def test_single_sparsity_no_plot(corpus, tokenizer, tmp_path):
    cfg, evaluator = _setup(corpus, tokenizer, tmp_path, methods=["magnitude-row"],
                            patterns=["unstructured"], sparsities=[0.5])
    res = run_compare(cfg, evaluator=evaluator, progress=False, log=lambda s: None)
    assert "png" not in res["files"] and len(res["rows"]) == 2


def test_results_json_records_relative_paths(boom, corpus, tokenizer, tmp_path, monkeypatch):
    from gpsearch import io
    from gpsearch.jobs.compare import run as compare_run

    # tmp_path plays the repository: --out is an absolute path inside it
    monkeypatch.setattr(compare_run, "relative_path",
                        lambda p, base=tmp_path: io.relative_path(p, base))
    cfg, evaluator = _setup(corpus, tokenizer, tmp_path, methods=["magnitude-row", boom],
                            patterns=["unstructured"], sparsities=[0.5, 0.6])
    res = run_compare(cfg, evaluator=evaluator, progress=False, log=lambda s: None)
    out = tmp_path / "out"
    assert res["files"]["json"] == str(out / "results.json")  # what the caller opens: unchanged
    saved = json.loads((out / "results.json").read_text())
    assert saved["files"] == {"json": "results.json", "csv": "results.csv", "md": "results.md",
                              "png": "ppl_vs_sparsity.png"}
    assert saved["config"]["out"] == "out"
    tb = next(r["traceback"] for r in saved["rows"] if r["method"] == boom)
    assert "boom: simulated" in tb and str(io.ROOT) not in tb  # repository files named relative


@pytest.mark.parametrize("args,needle", [
    (["--methods", "magnitude,nope_method"], "nope_method"),
    (["--methods", "mul(W, frob(X))"], "frob"),
    (["--pattern", "unstructured,2x4"], "2x4"),
    (["--pattern", "4:2"], "pattern"),
    (["--sparsity", "0.5,abc"], "abc"),
    (["--sparsity", "1.5"], "sparsity"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "nothing to run"),
])
def test_bad_input_one_line_before_any_work(args, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--model", str(tmp_path / "missing.gguf"), "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert "missing.gguf" not in err[0] and not out.exists()  # failed before loading the model


def test_plan_rejects_options_for_absent_methods():
    with pytest.raises(UserError, match="options"):
        plan(CompareConfig(methods=["wanda"], options={"sparsegpt": {"percdamp": 0.1}}))


def test_cli_end_to_end(corpus, tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "cmp"
    code = main(["compare", "--model", str(model_dir), "--methods", "magnitude,mul(W, sqrt(X))",
                 "--pattern", "unstructured", "--sparsity", "0.5", "--out", str(out),
                 "--data", corpus,
                 "--nsamples", "4", "--seqlen", "32", "--max-windows", "2",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| magnitude |" in printed and "mul(W, sqrt(X))" in printed
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["dense", "magnitude", "mul(W, sqrt(X))"]
    assert all(r["calibration"]["nsamples"] == 4 and r["model"] == str(model_dir) for r in rows)


def test_cli_options_reach_the_method_and_bad_ones_are_one_line(corpus, tokenizer, tmp_path,
                                                                capsys):
    from gpsearch.commands.compare import parse_options

    assert parse_options(["tiers.max_steps=20", "wanda+lora.lora_lr=1e-4",
                          "width-wanda.ranking=layer", "x.flag=true"]) == {
        "tiers": {"max_steps": 20}, "wanda+lora": {"lora_lr": 1e-4},
        "width-wanda": {"ranking": "layer"}, "x": {"flag": True}}
    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    common = ["compare", "--model", str(model_dir), "--sparsity", "0.25", "--data", corpus,
              "--nsamples", "4", "--seqlen", "32", "--max-windows", "2",
              "--cache-dir", str(tmp_path / "cache")]
    assert main(common + ["--methods", "magnitude", "--option", "max_steps=3"]) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err
    assert main(common + ["--methods", "magnitude", "--option", "shortgpt.n_remove_layers=1"]) == 2
    assert "not compared" in capsys.readouterr().err
    out = tmp_path / "cmp"
    assert main(common + ["--methods", "shortgpt", "--option", "shortgpt.n_remove_layers=1",
                          "--out", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["shortgpt"]["error"] is None
    assert rows["shortgpt"]["options"] == {"n_remove_layers": 1}
    capsys.readouterr()


def test_include_refuses_other_calibration_unless_asked(corpus, tokenizer, tmp_path, capsys):
    """Seed 002's check list: rows measured under another calibration config are refused."""
    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    def cmp(out, nsamples, *extra):
        return main(["compare", "--model", str(model_dir), "--methods", "magnitude",
                     "--sparsity", "0.5", "--data", corpus, "--nsamples", str(nsamples),
                     "--seqlen", "32", "--max-windows", "2", "--cache-dir", str(tmp_path / "c"),
                     "--out", str(tmp_path / out), *extra])

    assert cmp("first", 4) == 0
    assert cmp("same", 4, "--include", str(tmp_path / "first")) == 0
    rows = json.loads((tmp_path / "same" / "results.json").read_text())["rows"]
    included = [r for r in rows if r.get("included_from")]
    assert [r["method"] for r in included] == ["magnitude"] and not included[0]["mixed"]
    capsys.readouterr()
    assert cmp("other", 6, "--include", str(tmp_path / "first" / "results.json")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to mix" in err and "nsamples" in err
    assert not (tmp_path / "other").exists()
    assert cmp("mixed", 6, "--include", str(tmp_path / "first"), "--allow-mixed-calibration") == 0
    data = json.loads((tmp_path / "mixed" / "results.json").read_text())
    assert [r["method"] for r in data["rows"] if r.get("mixed")] == ["magnitude [mixed]"]
    assert any("ANOTHER configuration" in n for n in data["notes"])
    assert "[mixed]" in (tmp_path / "mixed" / "results.md").read_text()
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert cmp("junk", 4, "--include", str(tmp_path / "junk.json")) == 2
    assert "not a gpsearch compare" in capsys.readouterr().err
