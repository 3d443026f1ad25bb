import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.pruning.stats import InputStats
from gpsearch.tree import EXTENDED, parse_prefix
from tests.conftest import loaded, make_llama, make_opt
from tests.seqref import damped_inverse_hessian_diag, kill_inputs, sequential_reference


def make_eval(tiny_lm, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    return Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)


@pytest.mark.parametrize("pattern,s", [("unstructured", 0.5), ("2:4", 0.5), ("4:8", 0.5)])
def test_prune_end_to_end_and_restore(tiny_lm, corpus, tmp_path, pattern, s):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    evc = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4)
    dense = ev.perplexity(evc)["ppl"]
    before = {n: lin.weight.clone() for n, lin in ev.linears.items()}
    rec = ev.evaluate(parse_prefix("mul(W, sqrt(X))"), s, parse_pattern(pattern, s), evc)
    assert abs(rec["achieved_sparsity"] - s) < 0.01
    assert rec["ppl"] != dense and rec["evaluation"]["split"] == "validation"
    assert rec["calibration"]["nsamples"] == 4
    assert all(torch.equal(before[n], lin.weight) for n, lin in ev.linears.items())
    assert abs(ev.perplexity(evc)["ppl"] - dense) < 1e-9


def test_wanda_tree_prunes_exactly_wandas_mask(tiny_lm, corpus, tmp_path):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    tree = parse_prefix("mul(W, sqrt(X))")
    ev.prune(tree, 0.5, parse_pattern("unstructured"))
    X = ev.features.get("X")
    for name, lin in ev.linears.items():
        w = ev.dense[name]
        metric = w.abs() * X[name].sqrt()  # Wanda: |W| * ||x_j||
        k = w.shape[1] // 2
        idx = torch.sort(metric, dim=1, stable=True).indices[:, :k]
        expected = w.clone().scatter_(1, idx, 0.0)
        assert torch.equal(lin.weight, expected), name
    ev.restore()


def test_sequential_mode_differs_from_dense_after_first_block(tiny_lm, corpus, tmp_path):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    tree = parse_prefix("mul(W, sqrt(X))")
    ev.prune(tree, 0.5, parse_pattern("unstructured"), mode="sequential")
    seq = {n: lin.weight.clone() for n, lin in ev.linears.items()}
    ev.restore()
    ev.prune(tree, 0.5, parse_pattern("unstructured"), mode="dense")
    dense = {n: lin.weight.clone() for n, lin in ev.linears.items()}
    ev.restore()
    first = [n for n in seq if n.startswith("0.")]
    # block 0 sees the same (dense) inputs in both modes: identical masks there
    assert all(torch.equal(seq[n], dense[n]) for n in first
               if "o_proj" not in n and "out_proj" not in n
               and "down_proj" not in n and "fc2" not in n)
    assert any(not torch.equal(seq[n], dense[n]) for n in seq if n.startswith("1."))
    assert all(abs(float((seq[n] == 0).float().mean()) - 0.5) < 0.02 for n in seq)


def test_gradient_tree_and_per_layer(tiny_lm, corpus, tmp_path):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=2)
    rec = ev.evaluate(parse_prefix("mul(abs(mul(W, W)), mms(G))"), 0.3,
                      parse_pattern("unstructured"), evc, per_layer=True)
    assert set(rec["per_layer"]) == set(ev.linears)
    assert all(abs(v - 0.3) < 0.05 for v in rec["per_layer"].values())


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_sequential_local_h_matches_an_independent_computation(make, tokenizer, corpus,
                                                              tmp_path, monkeypatch):
    """Sequential mode's H of block i comes from block i's inputs through the already pruned
    blocks 0..i-1 (dead inputs included): checked against full-model forwards (tests.seqref)
    and numpy's inverse, tensor by tensor, and the resulting masks."""
    model = make()
    dead = kill_inputs(model)
    calib = CalibConfig(data=corpus, nsamples=8, seqlen=32, batch_size=3)
    ev = Evaluator(calib=calib, cache_dir=tmp_path, lm=loaded(model, tokenizer))
    local_h = []  # every local H the evaluator computes, in order (block by block)
    original = InputStats.inverse_hessian_diag

    def recording(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        local_h.append(out.clone())
        return out

    monkeypatch.setattr(InputStats, "inverse_hessian_diag", recording)
    ev.prune(parse_prefix("mul(W, H)", EXTENDED), 0.5, parse_pattern("unstructured"),
             mode="sequential")
    ref_model = make()
    kill_inputs(ref_model)
    samples = ev.features.samples()
    expected, dead_inputs = [], {}

    def prune_block(i, linears, inputs):
        for name, lin in linears.items():
            h = damped_inverse_hessian_diag(inputs[name], samples.shape[0])
            expected.append((f"{i}.{name}", h))
            dead_inputs[f"{i}.{name}"] = inputs[name]
            score = lin.weight.detach().abs() * h
            idx = torch.sort(score, dim=1, stable=True).indices[:, :score.shape[1] // 2]
            lin.weight.data.scatter_(1, idx, 0.0)

    sequential_reference(ref_model, samples, prune_block, batch_size=3)
    assert len(local_h) == len(expected) == len(ev.linears)
    for got, (name, ref) in zip(local_h, expected):
        assert torch.allclose(got, ref, rtol=2e-3, atol=1e-7), name
    for name, j in dead.items():  # the dead inputs were dead, and got 1 before the damping
        assert float(dead_inputs[name][:, j].abs().max()) == 0.0
        ref_h = dict(expected)[name]
        assert float(ref_h[0, j]) < 1.0 and torch.isfinite(ref_h).all()
    ref = dict(ref_model.named_parameters())
    for name, p in ev.model.named_parameters():
        agree = float(((p == 0) == (ref[name] == 0)).float().mean())
        assert agree > 0.998, name  # float summation order may flip a near-tie
