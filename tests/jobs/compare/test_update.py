"""compare's weight-update methods: METHOD+recon keeps the method's mask, sparsegpt:TREE equals
sparsegpt with the metric option, bad specs are one-line errors before any work, and the
helpers for a search report name and run both rows per tree."""

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.jobs.compare.registry import resolve_method
from gpsearch.jobs.compare.run import CompareConfig, plan, run_compare, weight_update_rows
from gpsearch.jobs.compare.update import evaluate_with_update, weight_update_methods
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import load_tree
from tests.conftest import loaded, make_llama


@pytest.fixture
def setup(tokenizer, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "c", lm=loaded(make_llama(), tokenizer))
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=2)
    return calib, ev, evc


def test_recon_rows_keep_the_mask_and_sparsegpt_tree_equals_option(setup, tmp_path):
    calib, ev, evc = setup
    dense_state = {n: p.detach().clone() for n, p in ev.model.named_parameters()}
    methods = ["wanda", "wanda+recon", "mul(W, sqrt(X))+recon", "sparsegpt", "sparsegpt:wanda"]
    cfg = CompareConfig(methods=methods, patterns=["unstructured", "2:4"], sparsities=[0.5],
                        out=str(tmp_path / "out"), calib=calib, evaluation=evc,
                        options={"sparsegpt": {"metric": "wanda"},
                                 "wanda+recon": {"recon_max_iter": 5}})
    res = run_compare(cfg, evaluator=ev, progress=False, log=lambda s: None)
    rows = {(r["method"], r["pattern"]): r for r in res["rows"]}
    for pattern in ("unstructured", "2:4"):
        assert all(rows[(m, pattern)]["error"] is None for m in methods)
        assert rows[("sparsegpt", pattern)]["ppl"] == rows[("sparsegpt:wanda", pattern)]["ppl"]
        assert rows[("wanda+recon", pattern)]["info"]["recon"]["max_iter"] == 5
        assert rows[("wanda+recon", pattern)]["achieved_sparsity"] == 0.5
        assert rows[("wanda+recon", pattern)]["ppl"] != rows[("wanda", pattern)]["ppl"]
        assert rows[("mul(W, sqrt(X))+recon", pattern)]["error"] is None
    assert all(torch.equal(p, dense_state[n]) for n, p in ev.model.named_parameters())
    # prune-first methods: the +recon mask is the method's own mask, zero for zero; trees and
    # wanda (one flow): block 0 has the same inputs, later blocks see reconstructed inputs
    pat = parse_pattern("2:4", 0.5)
    for name, same in (("magnitude", lambda n: True), ("wanda", lambda n: n.startswith("0."))):
        resolve_method(name).fn(ev, 0.5, pat)
        base = {n: lin.weight == 0 for n, lin in ev.linears.items()}
        ev.restore()
        info = resolve_method(f"{name}+recon").fn(ev, 0.5, pat)
        assert ("flow" in info["recon"]) == (name == "wanda")
        for n, lin in ev.linears.items():
            assert not same(n) or torch.equal(lin.weight == 0, base[n]), (name, n)
            assert bool(((lin.weight == 0).reshape(lin.out_features, -1, 4).sum(-1) == 2).all())
        ev.restore()


@pytest.mark.parametrize("spec,needle", [("shortgpt+recon", "mask-only"),
                                         ("wanda+lora+recon", "mask-only"),
                                         ("sparsegpt:", "give a tree"),
                                         ("sparsegpt:frob(W)", "frob")])
def test_bad_specs_are_one_line_errors(spec, needle):
    with pytest.raises(UserError) as e:
        plan(CompareConfig(methods=[spec]))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_rejects_bad_metric_option(capsys, tmp_path):
    from gpsearch.cli import main

    code = main(["compare", "--methods", "sparsegpt", "--option", "sparsegpt.metric=frob(W)",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "frob" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_helpers_for_the_search_report_and_prune_update(setup):
    calib, ev, evc = setup
    trees = ["mul(W, sqrt(X))"]
    assert weight_update_methods(trees) == ["mul(W, sqrt(X))+recon", "sparsegpt:mul(W, sqrt(X))"]
    rows = weight_update_rows(ev, trees, 0.5, parse_pattern("unstructured"), evc)
    assert [r["method"] for r in rows] == weight_update_methods(trees)
    assert all(r["error"] is None and r["achieved_sparsity"] == 0.5 for r in rows)
    tree = load_tree("wanda")
    for update in ("recon", "sparsegpt"):
        rec = evaluate_with_update(ev, tree, 0.5, parse_pattern("unstructured"), evc,
                                   update=update, recon={"max_iter": 3})
        assert rec["update"] == update and rec["achieved_sparsity"] == 0.5 and rec["ppl"] > 1
    assert all(torch.equal(lin.weight, ev.dense[n]) for n, lin in ev.linears.items())
