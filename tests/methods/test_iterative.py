"""Iterative pruning + fine-tuning: schedules, rounds reaching the target, nested masks, resume."""

import json
import math

import pytest

from gpsearch.cli import main
from gpsearch.errors import UserError
from gpsearch.methods.iterative import IterativeConfig, run_iterative, schedule_targets
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama


def _cfg(corpus, **kw):
    base = dict(metric="wanda", target_sparsity=0.45, prune_fraction=0.2, epochs_per_iteration=1,
                max_steps=2, lr=1e-3, batch_size=4, seed=3, data=corpus, nsamples=8, seqlen=32,
                calib_batch_size=4, max_windows=4)
    base.update(kw)
    return IterativeConfig(**base)


def _evaluator(cfg, tokenizer, tmp_path):
    return Evaluator(calib=cfg.calib(), cache_dir=tmp_path / "cache",
                     lm=loaded(make_llama(), tokenizer))


def test_schedules():
    geo = schedule_targets(IterativeConfig(target_sparsity=0.9, prune_fraction=0.1))
    assert len(geo) == math.ceil(math.log(0.1) / math.log(0.9)) == 22
    assert geo[-1] == 0.9 and abs(geo[0] - 0.1) < 1e-12 and abs(geo[1] - 0.19) < 1e-12
    assert len(schedule_targets(IterativeConfig(target_sparsity=0.9, max_iterations=5))) == 5
    cubic = schedule_targets(IterativeConfig(target_sparsity=0.8, schedule="cubic",
                                             max_iterations=4))
    assert len(cubic) == 4 and abs(cubic[-1] - 0.8) < 1e-12
    assert all(b > a for a, b in zip(cubic, cubic[1:]))
    assert cubic[0] - 0 > cubic[-1] - cubic[-2]  # fast early, slow late (Zhu & Gupta)
    for bad in (dict(schedule="linear"), dict(prune_fraction=1.0), dict(target_sparsity=1.2)):
        with pytest.raises(UserError):
            IterativeConfig(**bad)


def test_rounds_reach_target_with_nested_masks(tokenizer, corpus, tmp_path):
    cfg = _cfg(corpus, metric="magnitude")
    ev = _evaluator(cfg, tokenizer, tmp_path)
    logs = []
    state = run_iterative(cfg, save_dir=tmp_path / "run", evaluator=ev, progress=False,
                          log=logs.append, max_rounds=1)
    first = {n: lin.weight == 0 for n, lin in ev.linears.items()}
    state = run_iterative(resume=tmp_path / "run", evaluator=ev, progress=False, log=logs.append)
    h = state["history"]
    assert [r["round"] for r in h] == [1, 2, 3] and state["finished"]
    assert abs(h[-1]["sparsity"] - 0.45) < 0.02  # per-row int(s * in) rounding
    assert all(abs(r["sparsity"] - r["target_sparsity"]) < 0.02 for r in h)
    for name, lin in ev.linears.items():
        assert bool((lin.weight[first[name]] == 0).all()), name  # zeros stay pruned
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["summary"]["rounds"] == 3 and saved["config"]["metric"] == "magnitude"
    assert any("recovery" in line for line in logs) and any("final PPL" in line for line in logs)
    for r in h:
        assert r["recovery"] == pytest.approx(r["ppl_pruned"] - r["ppl_trained"])


def test_resume_gives_same_history(tokenizer, corpus, tmp_path):
    cfg = _cfg(corpus)
    quiet = dict(progress=False, log=lambda s: None)
    full = run_iterative(cfg, save_dir=tmp_path / "a",
                         evaluator=_evaluator(cfg, tokenizer, tmp_path), **quiet)
    run_iterative(cfg.to_dict(), save_dir=tmp_path / "b",
                  evaluator=_evaluator(cfg, tokenizer, tmp_path), max_rounds=1, **quiet)
    assert len(json.loads((tmp_path / "b" / "run.json").read_text())["history"]) == 1
    ev = _evaluator(cfg, tokenizer, tmp_path)  # a fresh process: dense weights again
    resumed = run_iterative(resume=tmp_path / "b", evaluator=ev, **quiet)
    keys = ("round", "target_sparsity", "sparsity", "ppl_pruned", "ppl_trained")
    assert len(resumed["history"]) == len(full["history"]) == 3
    for a, b in zip(full["history"], resumed["history"]):
        for k in keys:
            assert a[k] == pytest.approx(b[k], rel=1e-6), k
        assert a["train"]["epoch_loss"] == pytest.approx(b["train"]["epoch_loss"], rel=1e-6)
    assert resumed["dense_ppl"] == full["dense_ppl"]
    assert len(list((tmp_path / "b").glob("weights_*.safetensors"))) == 1


def test_refusals(tokenizer, corpus, tmp_path, capsys):
    cfg = _cfg(corpus)
    ev = _evaluator(cfg, tokenizer, tmp_path)
    with pytest.raises(UserError, match="calibration"):
        run_iterative(_cfg(corpus, nsamples=4), evaluator=ev, save_dir=tmp_path / "x",
                      progress=False)
    with pytest.raises(UserError, match="unknown iterative config"):
        run_iterative({"metric": "wanda", "bogus": 1}, evaluator=ev)
    assert main(["iterative", "--resume", str(tmp_path / "missing")]) == 2
    assert main(["iterative", "--metric", "frob(W)", "--model", str(tmp_path / "no.gguf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "run.json" in err[0] and "frob" in err[1]


def test_cli_end_to_end(tokenizer, corpus, tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    run_dir = tmp_path / "run"
    argv = ["iterative", "--model", str(model_dir), "--metric", "magnitude", "--target-sparsity",
            "0.3", "--prune-fraction", "0.2", "--epochs-per-iteration", "1", "--max-steps", "1",
            "--batch-size", "2", "--data", corpus, "--nsamples", "4", "--seqlen", "32",
            "--max-windows", "2", "--save", str(run_dir)]
    assert main(argv) == 0
    state = json.loads((run_dir / "run.json").read_text())
    assert [round(h["target_sparsity"], 6) for h in state["history"]] == [0.2, 0.3]
    assert "final PPL" in capsys.readouterr().out
    assert main(["iterative", "--resume", str(run_dir)]) == 0  # finished: prints the summary again


def test_rounds_follow_an_allocation_scaled_to_each_round(tokenizer, corpus, tmp_path):
    from gpsearch.allocation.file import write_allocation
    from gpsearch.allocation.levels import Allocation

    path = write_allocation(Allocation(0.45, [0.25, 0.65], method="test"), tmp_path / "a.json")
    cfg = _cfg(corpus, metric="magnitude", allocation=str(path))
    ev = _evaluator(cfg, tokenizer, tmp_path)
    quiet = dict(progress=False, log=lambda s: None)
    run_iterative(cfg, save_dir=tmp_path / "run", evaluator=ev, max_rounds=1, **quiet)
    first = {n: lin.weight == 0 for n, lin in ev.linears.items()}
    state = run_iterative(resume=tmp_path / "run", evaluator=ev, **quiet)
    h = state["history"]
    assert len(h) == 3 and state["finished"]
    for r in h:  # the profile 0.25 : 0.65, scaled so the total is the round's target, exactly
        f = r["target_sparsity"] / 0.45
        assert abs(r["sparsity"] - r["target_sparsity"]) <= 1e-3
        assert r["block_sparsity"] == pytest.approx([0.25 * f, 0.65 * f], abs=0.02)
    for name, lin in ev.linears.items():
        assert bool((lin.weight[first[name]] == 0).all()), name  # zeros stay pruned
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (saved["allocation"]["blocks"] == [0.25, 0.65]
            and saved["config"]["allocation"] == str(path))


def test_owl_allocation_is_decided_once_on_the_dense_model(tokenizer, corpus, tmp_path):
    from gpsearch.allocation.apply import owl_allocation
    from gpsearch.tree import load_tree

    cfg = _cfg(corpus, allocation="owl", owl_m=1.5, owl_lambda=0.1)
    ev = _evaluator(cfg, tokenizer, tmp_path)
    want = owl_allocation(ev, load_tree("wanda"), 0.45, 1.5, 0.1).blocks  # dense scores
    quiet = dict(progress=False, log=lambda s: None)
    run_iterative(cfg, save_dir=tmp_path / "run", evaluator=ev, max_rounds=1, **quiet)
    state = run_iterative(resume=tmp_path / "run", evaluator=ev, **quiet)
    assert state["allocation"]["blocks"] == pytest.approx(want)
    assert state["history"][-1]["block_sparsity"] == pytest.approx(want, abs=0.02)
    with pytest.raises(UserError, match="allocation"):
        _cfg(corpus, allocation=str(tmp_path / "missing.json"))
