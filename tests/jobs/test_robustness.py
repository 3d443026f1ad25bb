"""The robustness report on tiny LLaMA and OPT models: exact invariances, real changes."""

import json

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.jobs.robustness import RobustnessConfig, markdown, robustness, run_robustness
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.tree import EXTENDED, parse_prefix

MIXED = "add(W, X)"  # a raw sum of two terminals of different units: not scale-free


def make_eval(tiny_lm, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    return Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)


def ev_of(corpus):
    return EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3)


def row(rec, label):
    return next(r for r in rec["rows"] if r["condition"] == label)


def test_wanda_is_invariant_to_rescaling_and_a_mixed_sum_is_not(tiny_lm, corpus, tmp_path,
                                                                 one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    before = {n: lin.weight.clone() for n, lin in ev.linears.items()}
    cfg = RobustnessConfig(tree=MIXED, conditions="X=4,X=0.25,W=4,baseline,W=0.25,G=4")
    rec = robustness(ev, cfg, ev_of(corpus))
    assert [r["condition"] for r in rec["rows"]] == ["baseline", "X=4", "X=0.25", "W=4",
                                                     "W=0.25", "G=4"]
    for label in ("X=4", "X=0.25", "W=4", "W=0.25", "G=4"):
        r = row(rec, label)
        assert r["reference_masks_as_baseline"], label  # Wanda ranks |W| sqrt(X) per row
        assert r["reference_ppl"] == row(rec, "baseline")["reference_ppl"]
    assert row(rec, "G=4")["tree_masks_as_baseline"]  # the tree does not use G
    for label in ("X=4", "X=0.25", "W=4", "W=0.25"):
        assert not row(rec, label)["tree_masks_as_baseline"], label
    assert any(row(rec, lb)["tree_ppl"] != row(rec, "baseline")["tree_ppl"]
               for lb in ("X=4", "W=4"))
    assert all(torch.equal(before[n], lin.weight) for n, lin in ev.linears.items())
    assert abs(ev.perplexity(ev_of(corpus))["ppl"] - rec["dense_ppl"]) < 1e-9
    assert "| X=4 |" in markdown(rec)


def test_rescaling_multiplies_the_terminal_before_the_tree(tiny_lm, corpus, tmp_path, one_thread):
    """X x 4 for add(W, X) equals the tree add(W, mul(c4, X)) on unscaled features."""
    ev = make_eval(tiny_lm, corpus, tmp_path)
    from gpsearch.pruning.masks import parse_pattern

    pat = parse_pattern("unstructured")
    with ev.condition({"X": 4.0}):
        scaled = ev.compute_masks(parse_prefix(MIXED), 0.5, pat)
        s_masks = ev.compute_masks(parse_prefix("add(W, S)", EXTENDED), 0.5, pat)
    assert ev.rescale == {}
    direct = ev.compute_masks(parse_prefix("add(W, mul(c4, X))", EXTENDED), 0.5, pat)
    s_direct = ev.compute_masks(parse_prefix("add(W, mul(c2, S))", EXTENDED), 0.5, pat)
    assert all(torch.equal(scaled[n], direct[n]) for n in direct)
    assert all(torch.equal(s_masks[n], s_direct[n]) for n in s_direct)  # S follows sqrt(4) = 2


def test_calibration_and_pattern_conditions(tiny_lm, corpus, tmp_path, one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    cfg = RobustnessConfig(tree="mul(W, sqrt(X))", reference=None,
                           conditions="nsamples=2,seed=3,pattern=2:4,sparsity=0.3")
    rec = robustness(ev, cfg, ev_of(corpus))
    x_seed = ev._stores[CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2, seed=3)]
    assert not all(torch.equal(x_seed.get("X")[n], ev.features.get("X")[n]) for n in ev.linears)
    assert ev.calib.seed == 0 and ev.calib.nsamples == 4  # restored after each condition
    for label in ("nsamples=2", "seed=3", "pattern=2:4", "sparsity=0.3"):
        assert not row(rec, label)["tree_masks_as_baseline"], label
    assert "advantage" not in rec["rows"][0]
    # the 2:4 row is Wanda at 2:4: the same perplexity as pruning it directly
    from gpsearch.pruning.masks import parse_pattern

    direct = ev.evaluate(parse_prefix("mul(W, sqrt(X))", EXTENDED), 0.5, parse_pattern("2:4"),
                         ev_of(corpus))["ppl"]
    assert row(rec, "pattern=2:4")["tree_ppl"] == pytest.approx(direct, rel=1e-12)


def test_run_writes_markdown_and_json_with_commit(tiny_lm, corpus, tmp_path, one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    out = tmp_path / "rob"
    cfg = RobustnessConfig(tree=MIXED, conditions="X=4", evaluation=ev_of(corpus), out=str(out))
    run_robustness(cfg, evaluator=ev, progress=False)
    rec = json.loads((out / "robustness.json").read_text())
    assert "commit" in rec and rec["config"]["tree"] == MIXED
    assert rec["config"]["calibration"]["nsamples"] == 4
    assert (out / "robustness.md").read_text().count("\n| ") == 3  # header + 2 rows


@pytest.mark.parametrize("bad", ["Q=4", "X=-1", "X=0", "nsamples=0", "X", "model=x",
                                 "pattern=3:2", "X=4+X=2"])
def test_bad_conditions_are_user_errors_before_loading(bad, tmp_path):
    cfg = RobustnessConfig(tree="wanda", conditions=bad, out=str(tmp_path / "o"))
    with pytest.raises(UserError):
        run_robustness(cfg, evaluator=None, progress=False)
    assert not (tmp_path / "o").exists()
