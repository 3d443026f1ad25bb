import json
import random

import pytest
import torch

from gpsearch.allocation.apply import allocate, block_outlier_ratios, parse_spec
from gpsearch.allocation.file import parse_allocation, read_allocation, write_allocation
from gpsearch.allocation.levels import (
    Allocated,
    Allocation,
    block_index,
    check_allocation,
    exact_ratios,
    kind_of,
    outlier_ratio,
    owl_blocks,
    per_block,
    recentre,
    requested_ratios,
    weighted_total,
    zeros_of,
)
from gpsearch.config import CalibConfig
from gpsearch.errors import UserError
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import parse_prefix


def make_eval(tiny_lm, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    return Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)


def random_allocation(target, blocks, rng, spread=0.2):
    raw = [min(0.95, max(0.0, target + rng.uniform(-spread, spread))) for _ in range(blocks)]
    return recentre(raw, [1.0] * blocks, target)


@pytest.mark.parametrize("scope", ["row", "matrix"])
def test_random_allocations_total_is_exact_on_tiny_models(tiny_lm, corpus, tmp_path, scope,
                                                          one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    shapes = ev.shapes()
    tree = parse_prefix("mul(W, sqrt(X))")
    rng = random.Random(0)
    for target in (0.3, 0.5, 0.7, 0.85):
        pattern = parse_pattern("unstructured", scope=scope)
        blocks = random_allocation(target, 2, rng)
        # a per-kind row for q_proj, and the blocks shifted so that the total stays the target:
        # every case runs the per-kind branch of the allocation
        kind = "self_attn.q_proj"
        kinds = {kind: [min(0.95, max(0.0, target + rng.uniform(-0.1, 0.1))) for _ in blocks]}
        total = sum(r * c for r, c in shapes.values())
        other = sum(r * c for n, (r, c) in shapes.items() if kind_of(n) != kind)
        off = weighted_total(requested_ratios(Allocation(target, blocks, kinds), shapes), shapes)
        blocks = [b + (target - off) * total / other for b in blocks]
        alloc = Allocation(target, blocks, kinds, "test")
        ratios = check_allocation(alloc, shapes)
        assert any(kind_of(n) == kind for n in shapes)
        assert all(ratios[n] == kinds[kind][block_index(n)] for n in shapes if kind_of(n) == kind)
        exact = exact_ratios(ratios, shapes, target, scope)
        assert all(0.0 <= r < 1.0 for r in exact.values())
        counts = ev.prune(tree, Allocated(target, exact, alloc), pattern)
        ev.restore()
        zeros = sum(z for z, _ in counts.values())
        total = sum(t for _, t in counts.values())
        assert abs(zeros / total - target) <= 1e-3, (target, zeros / total)
        # the masks zero exactly what the rounding predicts
        assert all(counts[n][0] == zeros_of(exact[n], shapes[n], scope) for n in shapes)
        got = per_block(counts)
        assert max(abs(g - b) for g, b in zip(got, blocks)) < 0.1  # follows the request


def test_sparsegpt_follows_the_allocation(tiny_lm, corpus, tmp_path, one_thread):
    from gpsearch.methods.sparsegpt import prune_sparsegpt

    ev = make_eval(tiny_lm, corpus, tmp_path)
    spec = parse_spec("owl", owl_m=2.0, owl_lambda=0.1)
    s = allocate(ev, spec, 0.6, parse_pattern("unstructured"))
    prune_sparsegpt(ev, s, parse_pattern("unstructured"))
    counts = ev.layer_counts()
    ev.restore()
    zeros = sum(z for z, _ in counts.values())
    assert abs(zeros / sum(t for _, t in counts.values()) - 0.6) <= 1e-3
    for n, (z, t) in counts.items():
        assert abs(z / t - s.per_linear[n]) < 0.02


def test_owl_outlier_ratios_match_an_independent_computation(tiny_lm, corpus, tmp_path,
                                                              one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    tree = parse_prefix("mul(W, sqrt(X))")
    m = 3.0
    got = block_outlier_ratios(ev, tree, m)
    X = ev.features.get("X")
    want = []
    for b in range(2):
        flat = torch.cat([(lin.weight.abs() * X[n].sqrt().reshape(1, -1)).flatten().double()
                          for n, lin in ev.linears.items() if n.startswith(f"{b}.")])
        want.append(float((flat > m * flat.mean()).double().mean()))
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < min(got)  # the threshold is met by some scores: a real test of the count


def test_owl_blocks_formula():
    # independent: density_l = 2 lam (o - min)/(max - min) - mean + (1 - s); sparsity = 1 - density
    o, s, lam = [0.01, 0.04, 0.02, 0.03], 0.7, 0.08
    d = [2 * lam * (x - min(o)) / (max(o) - min(o)) for x in o]
    want = [1 - (v - sum(d) / len(d) + 1 - s) for v in d]
    assert owl_blocks(o, s, lam) == pytest.approx(want, abs=1e-12)
    got = owl_blocks(o, s, lam)
    assert max(got) - min(got) == pytest.approx(2 * lam) and got[0] == max(got)
    assert owl_blocks([0.02, 0.02], 0.5, 0.08) == pytest.approx([0.5, 0.5])
    # clipped at the top: the others absorb it and the mean stays the target
    clipped = owl_blocks([0.0, 0.5, 1.0], 0.95, 0.08)
    assert max(clipped) <= 0.999 and sum(clipped) / 3 == pytest.approx(0.95)


def test_outlier_ratio_counts():
    t = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0])
    assert outlier_ratio([t[:5], t[5:]], 5.0) == pytest.approx(0.1)
    assert outlier_ratio([t], 20.0) == 0.0


def test_file_round_trip(tmp_path):
    a = Allocation(0.7, [0.65, 0.75], {"mlp.down_proj": [0.6, 0.8]}, "search",
                   {"generations": 3})
    p = write_allocation(a, tmp_path / "a.json")
    b = read_allocation(p)
    assert (b.target, b.blocks, b.kinds, b.method, b.info) == \
        (a.target, a.blocks, a.kinds, a.method, a.info)


def _file(tmp_path, **over):
    obj = {"format": "gpsearch-allocation", "version": 1, "sparsity": 0.5, "blocks": [0.4, 0.6]}
    obj.update(over)
    p = tmp_path / "alloc.json"
    p.write_text(json.dumps(obj))
    return p


@pytest.mark.parametrize("over,msg", [
    ({"blocks": [0.4, 1.0]}, "outside"), ({"blocks": [0.4, -0.1]}, "outside"),
    ({"sparsity": 1.2}, "outside"), ({"blocks": []}, "non-empty"), ({"extra": 1}, "unknown key"),
    ({"blocks": [0.4, "x"]}, "number"), ({"format": "other"}, "not a"),
    ({"kinds": {"mlp.down_proj": [0.5]}}, "blocks")])
def test_bad_files_one_line(tmp_path, over, msg):
    with pytest.raises(UserError, match=msg) as e:
        read_allocation(_file(tmp_path, **over))
    assert "\n" not in str(e.value)


def test_wrong_block_count_or_total_against_the_model(tiny_lm, corpus, tmp_path, one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    pat = parse_pattern("unstructured")
    with pytest.raises(UserError, match="3 blocks"):
        allocate(ev, parse_spec(str(_file(tmp_path, blocks=[0.5, 0.5, 0.5]))), 0.5, pat)
    with pytest.raises(UserError, match="total sparsity"):
        allocate(ev, parse_spec(str(_file(tmp_path, blocks=[0.5, 0.6]))), 0.5, pat)
    with pytest.raises(UserError, match="not 0.6"):
        allocate(ev, parse_spec(str(_file(tmp_path))), 0.6, pat)
    with pytest.raises(UserError, match="needs unstructured"):
        allocate(ev, parse_spec("owl"), 0.5, parse_pattern("2:4", 0.5))
    s = allocate(ev, parse_spec(str(_file(tmp_path))), 0.5, pat)
    assert s.per_linear["0.self_attn.q_proj" if "0.self_attn.q_proj" in s.per_linear
                        else next(iter(s.per_linear))] < 0.5  # block 0 asked for 0.4


def test_parse_spec_errors(tmp_path):
    assert parse_spec(None) is None and parse_spec("owl").kind == "owl"
    for bad, kw in (("nope", {}), ("owl", {"owl_m": 0}), ("owl", {"owl_lambda": 0.6}),
                    (str(tmp_path / "missing.json"), {})):
        with pytest.raises(UserError):
            parse_spec(bad, **kw)
    assert parse_allocation({"format": "gpsearch-allocation", "version": 1, "sparsity": 0.5,
                             "blocks": [0.5]}).method == "file"


def test_compare_rows_record_the_allocation(tokenizer, corpus, tmp_path, one_thread):
    from gpsearch.config import EvalConfig
    from gpsearch.jobs.compare.run import CompareConfig, run_compare
    from tests.conftest import loaded, make_llama

    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=4)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make_llama(), tokenizer))
    afile = _file(tmp_path, sparsity=0.7, blocks=[0.65, 0.75])
    cfg = CompareConfig(methods=["mul(W, sqrt(X))", "sparsegpt"], sparsities=[0.7],
                        calib=calib, evaluation=evc, out=str(tmp_path / "out"), model="tiny",
                        tree_features="dense", allocations=["owl", str(afile)])
    res = run_compare(cfg, evaluator=ev, progress=False, log=lambda m: None)
    rows = {r["method"]: r for r in res["rows"][1:]}
    assert set(rows) == {f"{m} [{a}]" for m in ("mul(W, sqrt(X))", "sparsegpt")
                         for a in ("owl", "alloc")}
    for r in rows.values():
        assert r["error"] is None, r["error"]
        assert r["allocation"]["method"] in ("owl", "file")
        assert len(r["block_sparsity"]) == 2 and (tmp_path / "out" / r["plot"]).is_file()
    for m in ("mul(W, sqrt(X))", "sparsegpt"):
        assert abs(rows[f"{m} [owl]"]["achieved_sparsity"] - 0.7) <= 1e-3
        assert rows[f"{m} [alloc]"]["block_sparsity"][0] < rows[f"{m} [alloc]"]["block_sparsity"][1]
    with pytest.raises(UserError, match="not to magnitude"):
        run_compare(CompareConfig(methods=["magnitude"], allocations=["owl"], calib=calib,
                                  evaluation=evc, out=str(tmp_path / "o3")), evaluator=ev,
                    progress=False)
    bad = _file(tmp_path, sparsity=0.7, blocks=[0.7, 0.7, 0.7])
    with pytest.raises(UserError, match="3 blocks"):
        run_compare(CompareConfig(methods=["sparsegpt"], sparsities=[0.7], calib=calib,
                                  allocations=[str(bad)], evaluation=evc,
                                  out=str(tmp_path / "o4")), evaluator=ev, progress=False)
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


@pytest.mark.parametrize("blocks,needle", [([0.4, 1.0], "outside"), ([0.4, -0.2], "outside")])
def test_cli_bad_allocation_file_one_line_nothing_written(tmp_path, capsys, blocks, needle):
    from gpsearch.cli import main

    bad = _file(tmp_path, blocks=blocks)
    out = tmp_path / "r.json"
    for cmd in (["prune", "--tree", "wanda", "--json", str(out)],
                ["compare", "--methods", "wanda", "--out", str(tmp_path / "cmp")]):
        code = main([*cmd, "--sparsity", "0.5", "--allocation", str(bad)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and needle in err
    assert not out.exists() and not (tmp_path / "cmp").exists()


def test_uniform_allocation_is_the_plain_run(tiny_lm, corpus, tmp_path, one_thread):
    ev = make_eval(tiny_lm, corpus, tmp_path)
    tree, pat = parse_prefix("mul(W, sqrt(X))"), parse_pattern("unstructured")
    plain = ev.compute_masks(tree, 0.7, pat)
    s = allocate(ev, parse_spec("uniform"), 0.7, pat)
    assert s == 0.7 and s.allocation.method == "uniform"
    masks = ev.compute_masks(tree, s, pat)
    assert all(torch.equal(plain[n], masks[n]) for n in plain)


@pytest.mark.parametrize("update", ["none", "recon"])
def test_prune_api_records_the_allocation_and_plots_it(tokenizer, corpus, tmp_path, update,
                                                       one_thread):
    from gpsearch.allocation.apply import plot_next_to
    from gpsearch.api import PruneConfig, prune
    from gpsearch.config import EvalConfig
    from tests.conftest import loaded, make_llama

    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make_llama(), tokenizer))
    cfg = PruneConfig(tree="wanda", sparsity=0.7, allocation="owl", owl_m=2.0, update=update,
                      evaluation=EvalConfig(data=corpus, split="test", seqlen=16, max_windows=4),
                      calib=calib, recon_max_iter=2)
    rec = prune(cfg, evaluator=ev, log=lambda m: None)
    assert rec["allocation"]["method"] == "owl" and len(rec["block_sparsity"]) == 2
    assert abs(rec["achieved_sparsity"] - 0.7) <= 1e-3
    assert rec["allocation"]["info"]["owl_m"] == 2.0 and rec["config"]["allocation"] == "owl"
    if update == "none":
        png = plot_next_to(rec, tmp_path / "r.json")
        assert png.name == "r_allocation.png" and png.is_file()
