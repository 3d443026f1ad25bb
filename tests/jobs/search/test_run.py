"""`gpsearch search` end to end on a tiny random LLaMA and a local corpus, plus its input errors."""

import json

import pytest
import torch

from gpsearch.cli import main
from gpsearch.engine.space import load_space
from gpsearch.io import code_version
from gpsearch.tree import EXTENDED, load_tree, parse_prefix
from tests.conftest import make_llama, write_corpus


@pytest.fixture
def tiny(tmp_path, tokenizer):
    model_dir = tmp_path / "model"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    corpus = write_corpus(tmp_path / "corpus.txt")
    return ["--model", str(model_dir), "--data", corpus, "--nsamples", "4", "--seqlen", "16",
            "--batch-size", "4", "--stages", "32:1,64:0.5", "--test-windows", "4",
            "--cache-dir", str(tmp_path / "cache"), "--pick-conditions", "",
            "--fitness-nsamples", ""]


def test_small_real_search_writes_the_run_directory(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", *tiny, "--population", "4", "--offspring", "4", "--elite", "2",
            "--generations", "2", "--seed", "1", "--out", str(out),
            "--seed-trees", "wanda", "mul(sqr(W), X)",  # same mask as wanda: a fingerprint hit
            "--funnel", ""]  # best_tree.json is the search's own best (auto funnel: test_steps.py)
    assert main(args) == 0
    for name in ("config.json", "checkpoint.json", "log.jsonl", "hall_of_fame.csv",
                 "best_tree.json", "progress.png", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    best = load_tree(str(out / "best_tree.json"))
    cp = json.loads((out / "checkpoint.json").read_text())
    tuning = json.loads((out / "tuning.json").read_text()) if (out / "tuning.json").exists() else {}
    best_expr = (tuning.get("winner") or cp["hof"][0])["expr"]
    assert cp["generation"] == 2 and parse_prefix(best_expr, EXTENDED) == best
    config = json.loads((out / "config.json").read_text())
    assert config["evaluation"]["split"] == "validation" and config["settings"]["population"] == 4
    assert config["commit"] == code_version()["commit"] and "dirty" in config
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(records) == cp["counters"]["candidates"] and {r["gen"] for r in records} == {0, 1, 2}
    for gen in (1, 2):  # 4 children, refilled (default --refill 3) while fewer were evaluated
        rs = [r for r in records if r["gen"] == gen]
        evaluated = sum(r["hit"] is None for r in rs)
        assert evaluated <= 4 and 4 <= len(rs) <= 4 * (1 + 3)
        assert evaluated == 4 or len(rs) > 4
    assert any(r["hit"] == "fingerprint" and r["simplified"] == "mul(sqr(W), X)" for r in records)
    summary = (out / "summary.md").read_text()
    assert "Test split" in summary and "| `dense` |" in summary and "Wanda's tree" in summary
    assert "validation" in summary and "Diversity" in summary and "last stage" in summary
    staged = [r for r in records if r.get("stages")]
    assert staged and all(r["stages"][0]["windows"] == 2 for r in staged)
    assert {len(r["stages"]) for r in staged} == {1, 2}  # only some were promoted to stage 2
    assert cp["hof"] and all(h["windows"] == 4 for h in cp["hof"])
    # the cost in machine-independent units: windows scored per candidate, summed, x seqlen
    windows = sum(r["stages"][-1]["windows"] for r in staged if r["hit"] is None)
    later = sum(len(r["stages"]) > 1 for r in staged if r["hit"] is None)
    assert cp["counters"]["windows"] == windows and cp["counters"]["later_evals"] == later
    assert f"{later} later-stage evaluations, {windows * 16:,} candidate forward tokens" in summary
    n_full = sum(len(r["stages"]) == 2 for r in staged if r["hit"] is None)
    assert f"selection vs last stage: over the {n_full} trees scored on every stage" in summary
    assert f"{cp['counters']['hurdled']} rejected by the hurdle's proxy" in summary
    # lead vs noise: the hand trees and Wanda's tree at calibration seed 1, on the test split
    lead = json.loads((out / "lead.json").read_text())
    report = json.loads((out / "test_report" / "results.json").read_text())["rows"]
    by = {r["method"]: r["ppl"] for r in report}
    # the default report ("trees"): dense, Wanda's tree and the best tree, no other method
    assert set(by) == {"dense", "mul(W, sqrt(X))", best_expr}
    assert lead["best_ppl"] == by[best_expr] and lead["hand_ppl"]["wanda_tree"] == by[
        "mul(W, sqrt(X))"]  # reused from the test report: the same evaluator and windows
    assert lead["noise"] >= 0.001 and lead["noise_seeds"] == [0, 1]
    strongest = min(lead["hand_ppl"].values())
    assert lead["margin"] == pytest.approx(1 - lead["best_ppl"] / strongest)
    assert "## Lead vs noise (test split)" in summary and lead["verdict"] in summary

    # extend the finished run by one generation: it continues from its checkpoint
    # (and its report replays the best tree with a weight update, beside plain SparseGPT)
    assert main(["search", "--resume", str(out), "--generations", "3", "--report", "none",
                 "--report-update", "1"]) == 0
    cp = json.loads((out / "checkpoint.json").read_text())
    assert cp["generation"] == 3 and len(cp["logbook"]) == 4
    summary = (out / "summary.md").read_text()
    section = summary.split("## Test split")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    names = [r.split("`")[1] for r in rows]
    assert names[:2] == ["dense", "sparsegpt"] and len(names) == 5, names
    assert names[3:] == [f"{names[2]}+recon", f"sparsegpt:{names[2]}"]
    assert parse_prefix(names[2], EXTENDED) == load_tree(str(out / "best_tree.json"))
    assert all("error" not in r for r in rows)
    capsys.readouterr()


@pytest.mark.parametrize("argv,needle", [
    (["--sparsity", "1.5"], "sparsity"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "2:4"),
    (["--space", "no_such_space"], "search space"),
    (["--space", "prunerzero", "--seed-trees", "mul(W, qrt(X))"], "qrt"),  # not in that space
    (["--stages", "512:1,256:0.5"], "stages"),
    (["--fitness", "mse"], "fitness"),
    (["--immigrants", "-1"], "immigrants"),
    (["--population", "1"], "population"),
    (["--p-crossover", "0.9", "--p-mutation", "0.9"], "p_crossover"),
    (["--generations", "-1"], "generations"),
    (["--eval-timeout", "0"], "eval-timeout"),
    (["--device-map", "everywhere"], "device-map"),
    (["--gpus-per-worker", "0"], "gpus-per-worker"),
    (["--report-update", "-1"], "report-update"),
    (["--tune", "-1"], "tune"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, needle, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not out.exists()


def test_every_session_of_a_resumed_run_records_its_commit(tiny, tmp_path):
    out = tmp_path / "run"
    base = ["search", *tiny, "--population", "4", "--offspring", "4", "--elite", "2",
            "--seed", "1", "--robustness", "0", "--report", "none", "--funnel", ""]
    assert main(base + ["--generations", "1", "--out", str(out)]) == 0
    assert main(["search", "--resume", str(out), "--generations", "2", "--report", "none",
                 "--robustness", "0"]) == 0
    sessions = [json.loads(line) for line in (out / "sessions.jsonl").read_text().splitlines()]
    assert [(s["after_generation"], s["generations"]) for s in sessions] == [(None, 1), (1, 2)]
    assert all(s["commit"] == code_version()["commit"] for s in sessions)
    assert sessions[1]["runtime"]["report"] == "none"
    commit = code_version()["commit"][:7]
    assert f"generations 0-1 at {commit}" in (out / "summary.md").read_text()


def test_resume_errors(tmp_path, capsys):
    assert main(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert "cannot resume" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    config = {"settings": {"seed": 0}, "space": load_space("prunerzero").to_dict(),
              "seed_exprs": [], "evaluation": {"max_windows": 8, "seqlen": 256},
              "calibration": {}}
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main(["search", "--resume", str(tmp_path / "run"), "--seed", "3"]) == 2
    assert "keeps its configuration" in capsys.readouterr().err
    assert main(["search", "--resume", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "either" in capsys.readouterr().err


def test_a_failed_start_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    """Data, model and space errors surface before the run directory exists, also with the
    default runs/search-<time> directory."""
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--data", str(tmp_path / "nonexistent")]) == 2
    assert "nonexistent" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert main(["search", *tiny, "--model", str(tmp_path / "no-model"), "--out", "a"]) == 2
    assert "no-model" in capsys.readouterr().err and not (tmp_path / "a").exists()
    short = tmp_path / "short.txt"
    short.write_text("w1 w2 w3\n\nw4 w5")  # loads, but fewer tokens than seqlen
    assert main(["search", *tiny, "--data", str(short), "--out", "b"]) == 2
    assert "fewer than seqlen" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["search", *tiny, "--device", "cuda:9" if not torch.cuda.is_available()
                 else "nodevice", "--out", "c"]) == 2
    assert "device" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert not (tmp_path / "runs").exists()


def test_every_setting_is_an_option():
    from gpsearch.commands.search import OPTS
    from gpsearch.jobs.search.plan import DEFAULTS

    assert set(OPTS) | {"seed_trees"} == set(DEFAULTS)  # seed_trees: its own nargs option


def test_multi_model_fitness_transfer_and_robustness_sections(tiny, tmp_path, tokenizer, capsys):
    """--fitness-models LLaMA,OPT (+ a rescaled condition), --transfer-model OPT: recorded in
    config.json, the summary has the robustness and transfer sections, and a resumed run refuses
    another fitness condition."""
    from tests.conftest import make_opt

    opt = tmp_path / "opt"
    make_opt().save_pretrained(opt)
    tokenizer.save_pretrained(opt)
    llama = tiny[tiny.index("--model") + 1]
    out = tmp_path / "run"
    args = ["search", *tiny, "--population", "4", "--offspring", "4", "--elite", "2",
            "--generations", "1", "--report", "none", "--out", str(out),
            "--fitness-models", f"{llama},{opt}", "--fitness-rescale", "X=4",
            "--fitness-reduce", "max", "--transfer-model", str(opt), "--robustness", "1",
            "--seed-trees", "wanda", "add(W, X)"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["fitness_models"] == f"{llama},{opt}"
    assert [c["label"] for c in config["conditions"]] == [
        "baseline", "X=4", f"model={opt}", f"X=4+model={opt}"]
    assert "multi-condition" in config["fitness"] and "worst" in config["fitness"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("stages") for r in records)
    summary = (out / "summary.md").read_text()
    assert "## Robustness" in summary and "| X=4 |" in summary and "| X=0.25 |" in summary
    assert f"## Transfer to `{opt}`" in summary and "`ria`" in summary and "**best**" in summary
    assert (out / "transfer_report" / "results.json").exists()
    assert json.loads((out / "robustness.json").read_text())["trees"][0]["rows"]
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--fitness-reduce", "mean"]) == 2
    assert "keeps its configuration" in capsys.readouterr().err
    assert main(["search", "--resume", str(out), "--fitness-rescale", "G=4"]) == 2
    assert "keeps its configuration" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["--fitness-reduce", "median"], "fitness-reduce"),
    (["--fitness-rescale", "Q=3"], "Q"),
    (["--fitness-seeds", "one"], "fitness-seeds"),
    (["--robustness", "-1"], "robustness"),
])
def test_bad_fitness_conditions_are_one_line(argv, needle, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and not out.exists()
