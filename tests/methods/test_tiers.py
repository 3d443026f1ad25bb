import json

import pytest
import torch
from safetensors.torch import load_file

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.methods.tiers import current_scores, run_tiers
from gpsearch.methods.tiers_math import DENSE, MID_2_4, TOPK
from gpsearch.methods.tiers_schedule import parse_schedule
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.tree import parse_prefix

# 0.5 of the blocks to 2:4; then half the dense to 2:4 and a third of the 2:4 to TOPK
SCHEDULE = """iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs
1,0.5,0.5,0,0.5,0,1
2,0.25,0.5,0.25,0.5,0.333333,1
3,0.25,0.25,0.5,0,0.5,0
"""


class FakeFinetune:
    """Changes every weight deterministically (zeros stay zero) and records the masks it got."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, masks, epochs):
        self.calls.append({n: m.clone() for n, m in masks.items()})
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.mul_(1 + 0.3 * torch.cos(1000 * p))
        return {"epochs": epochs}


def make(tiny_lm, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=tiny_lm)
    return ev, EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=2)


def test_run_reaches_the_schedule_and_holds_masks(tiny_lm, corpus, tmp_path):
    ev, evc = make(tiny_lm, corpus, tmp_path)
    ft = FakeFinetune()
    rec = run_tiers(ev, parse_prefix("mul(W, sqrt(X))"), parse_schedule(SCHEDULE), evc, ft,
                    block_size=8, topk=4, save_dir=tmp_path / "run", log=lambda s: None)
    h = rec["history"]
    assert [r["iteration"] for r in h] == [1, 2, 3] and len(ft.calls) == 2
    # every linear's block count is a multiple of 8 here, so the shares are exact
    assert h[1]["shares"] == pytest.approx({"dense": 0.25, "mid_2_4": 0.5, "topk": 0.25})
    for r in h:
        assert r["sparsity"] == pytest.approx(r["implied_sparsity"], abs=1e-9)
        assert r["sparsity_after_finetune"] == pytest.approx(r["sparsity"], abs=1e-9)
    assert h[1]["implied_sparsity"] == pytest.approx(0.25 + 0.25 * (1 - 4 / 64))
    # the fine-tuner got exactly the zeros of the weights; masks only grow
    for before, after in zip(ft.calls, ft.calls[1:]):
        assert all(not (before[n] & ~after[n]).any() for n in before)
    saved = load_file(str(tmp_path / "run" / "tiers_003.safetensors"))
    for name, lin in ev.linears.items():
        assert torch.equal(saved[f"mask/{name}"].bool(), lin.weight == 0)
        t = saved[f"tiers/{name}"]
        assert t.dtype == torch.int8 and set(t.unique().tolist()) <= {DENSE, MID_2_4, TOPK}
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    assert stored["completed"] == 3 and stored["config"]["tree"] == "mul(W, sqrt(X))"


def test_resume_gives_the_same_result(tokenizer, corpus, tmp_path):
    from tests.conftest import loaded, make_llama

    tree, sched = parse_prefix("mul(W, sqrt(X))"), parse_schedule(SCHEDULE)
    ev1, evc = make(loaded(make_llama(), tokenizer), corpus, tmp_path)
    full = run_tiers(ev1, tree, sched, evc, FakeFinetune(), 8, 4, tmp_path / "a",
                     log=lambda s: None)
    ev2, _ = make(loaded(make_llama(), tokenizer), corpus, tmp_path)
    run_tiers(ev2, tree, sched[:2], evc, FakeFinetune(), 8, 4, tmp_path / "b", log=lambda s: None)
    ev3, _ = make(loaded(make_llama(), tokenizer), corpus, tmp_path)  # fresh dense model
    out = run_tiers(ev3, tree, sched, evc, FakeFinetune(), 8, 4, tmp_path / "b", resume=True,
                    log=lambda s: None)
    assert [r["iteration"] for r in out["history"]] == [1, 2, 3]
    assert all(torch.equal(ev1.linears[n].weight, ev3.linears[n].weight) for n in ev1.linears)
    assert out["final_ppl"] == pytest.approx(full["final_ppl"], rel=1e-6)
    with pytest.raises(UserError, match="not empty"):
        run_tiers(ev3, tree, sched, evc, FakeFinetune(), 8, 4, tmp_path / "b", log=lambda s: None)
    with pytest.raises(UserError, match="block_size"):
        run_tiers(ev3, tree, sched, evc, FakeFinetune(), 16, 4, tmp_path / "b", resume=True)


def test_scores_use_the_current_weights(tokenizer, corpus, tmp_path):
    from tests.conftest import loaded, make_llama

    ev, _ = make(loaded(make_llama(), tokenizer), corpus, tmp_path)
    dense_x = ev.features.get("X")
    with torch.no_grad():
        for lin in ev.linears.values():
            lin.weight.mul_(-2.0)
    s = current_scores(ev, parse_prefix("W"), fresh=True)
    assert all(torch.allclose(s[n].float(), lin.weight.abs()) for n, lin in ev.linears.items())
    s = current_scores(ev, parse_prefix("X"), fresh=True)
    assert any(not torch.allclose(s[n].float(), dense_x[n].expand_as(s[n]).float())
               for n in ev.linears)  # X recomputed on the changed model


def test_cli_runs_and_resumes(tokenizer, corpus, tmp_path, capsys):
    from gpsearch.cli import main
    from tests.conftest import make_llama

    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    lines = SCHEDULE.splitlines()
    (tmp_path / "two.csv").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "three.csv").write_text(SCHEDULE)
    common = ["--model", str(model_dir), "--data", corpus, "--nsamples", "4", "--seqlen", "16",
              "--max-windows", "2", "--block-size", "8", "--topk", "4", "--max-steps", "2",
              "--ft-batch-size", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main(["tiers", "--schedule", str(tmp_path / "two.csv"), "--save", str(tmp_path / "run")]
                + common) == 0
    assert main(["tiers", "--schedule", str(tmp_path / "three.csv"), "--resume",
                 str(tmp_path / "run"), "--json", str(tmp_path / "rec.json")] + common) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "iteration 3:" in out
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert [h["iteration"] for h in rec["history"]] == [1, 2, 3]
    assert rec["history"][0]["finetune"]["steps"] == 2
    assert main(["tiers", "--schedule", str(tmp_path / "nope.csv")] + common) == 2
