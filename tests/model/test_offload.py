"""The restore store (host memory, bit-exact), float32 results identical to the layout before
(restore copies beside the model, cached |W|), the --offload block mover and --device-map.

Devices: CPU always; CUDA too when it is available (scripts/gpu_check_memory.sh runs this file
on a GPU machine), where the block mover really moves blocks between host and device."""

from __future__ import annotations

import copy

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.methods.sparsegpt import prune_sparsegpt
from gpsearch.model.load import load_model, place_model
from gpsearch.model.offload import BlockOffloader, RestoreStore, offloader
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import make_mask, parse_pattern
from gpsearch.tree import EXTENDED, check_score, evaluate, parse_prefix
from tests.conftest import loaded, make_llama, make_opt, make_tokenizer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TREES = ["mul(W, sqrt(X))", "mul(abs(mul(W, W)), mms(G))", "add(mul(W, sqrt(X)), mul(W, G))",
         "add(mul(W, sqrt(add(X, X))), zsn(mul(mms(W), G)))"]
UNSTRUCTURED = parse_pattern("unstructured")


def calib(corpus):
    return CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().view({4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_restore_is_bit_exact_and_the_store_lives_in_host_memory(dtype, tokenizer, corpus,
                                                                 tmp_path, one_thread):
    model = make_llama().to(dtype)
    lin = model.model.layers[0].mlp.up_proj.weight
    with torch.no_grad():  # values a float comparison would not tell apart: -0.0, subnormals
        lin[0, :4] = torch.tensor([-0.0, 1e-39, -1e-40, 0.0]).to(dtype)
    before = {n: bits(p) for n, p in model.named_parameters()}
    e = Evaluator(calib=calib(corpus), cache_dir=tmp_path, lm=loaded(model, tokenizer))
    assert isinstance(e.dense, RestoreStore)
    assert all(e.dense.host(n).device.type == "cpu" for n in e.dense)
    assert all(e.dense.host(n).data_ptr() != lin.weight.data_ptr() for n, lin in e.linears.items())
    for expr in TREES:
        e.prune(parse_prefix(expr), 0.5, UNSTRUCTURED)
        assert any((lin.weight == 0).float().mean() > 0.4 for lin in e.linears.values())
        e.restore()
        assert all(torch.equal(before[n], bits(p)) for n, p in model.named_parameters()), expr


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_float32_masks_and_perplexity_identical_to_the_cached_layout(make, tokenizer, corpus,
                                                                     tmp_path, one_thread):
    """The layout before: dense clones beside the model and a cached float32 |W| (recomputed
    here independently of the evaluator's store)."""
    model = make()
    orig = {n: lin.weight.detach().clone() for n, lin in
            ((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))}
    e = Evaluator(calib=calib(corpus), cache_dir=tmp_path, lm=loaded(model, tokenizer))
    X, G = e.features.get("X"), e.features.get("G")
    assert all(g.dtype == torch.float32 for g in G.values())
    evc = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4)
    full = {n: f"model.{n}" if hasattr(model, "model") else n for n in e.linears}
    for expr in TREES:
        tree = parse_prefix(expr)
        cached_abs = {}
        expected = {}
        for name in e.linears:
            w0 = orig[_module_name(model, e.linears[name])]
            cached_abs[name] = w0.abs().float()
            score = check_score(evaluate(tree, {"W": cached_abs[name], "X": X[name], "G": G[name]},
                                         EXTENDED), w0.shape)
            expected[name] = w0.masked_fill(make_mask(score, 0.5, UNSTRUCTURED), 0.0)
        e.prune(tree, 0.5, UNSTRUCTURED)
        assert all(torch.equal(lin.weight, expected[n]) for n, lin in e.linears.items()), expr
        got = e.perplexity(evc)["ppl"]
        e.restore()
        with torch.no_grad():
            for name, lin in e.linears.items():
                lin.weight.copy_(expected[name])
        assert e.perplexity(evc)["ppl"] == got
        e.restore()
    del full


def _module_name(model, module):
    return next(n for n, m in model.named_modules() if m is module)


def _pair(dev, tokenizer):
    """The same tiny model twice: resident on ``dev``, and blocks offloaded to host memory."""
    resident = make_llama()
    off = copy.deepcopy(resident)
    resident.to(dev)
    BlockOffloader(off, dev)
    return loaded(resident, tokenizer, "res"), loaded(off, tokenizer, "off")


@pytest.mark.parametrize("dev", DEVICES)
def test_offload_keeps_blocks_in_host_memory_and_gives_the_same_results(dev, tokenizer, corpus,
                                                                        tmp_path, one_thread):
    res_lm, off_lm = _pair(dev, tokenizer)
    mover = offloader(off_lm.model)
    blocks = off_lm.model.model.layers
    assert all(p.device.type == "cpu" for p in blocks.parameters())
    assert off_lm.model.model.embed_tokens.weight.device.type == torch.device(dev).type
    seen = []
    handle = blocks[1].register_forward_pre_hook(
        lambda m, a: seen.append(next(m.parameters()).device.type))
    evc = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4)
    out = {}
    for key, lm in (("res", res_lm), ("off", off_lm)):
        e = Evaluator(calib=calib(corpus), cache_dir=tmp_path / key, lm=lm)
        rec = e.evaluate(parse_prefix("mul(W, sqrt(X))"), 0.5, UNSTRUCTURED, evc, mode="sequential",
                         keep=True)
        weights = {n: lin.weight.detach().cpu().clone() for n, lin in e.linears.items()}
        e.restore()
        e.prune(parse_prefix("mul(W, sqrt(X))"), 0.5, UNSTRUCTURED, mode="dense")
        weights.update({f"dense:{n}": lin.weight.detach().cpu().clone()
                        for n, lin in e.linears.items()})
        e.restore()
        prune_sparsegpt(e, 0.5, UNSTRUCTURED)
        sgpt = {n: lin.weight.detach().cpu().clone() for n, lin in e.linears.items()}
        out[key] = (rec["ppl"], weights, sgpt, e.perplexity(evc)["ppl"])
        e.restore()
    handle.remove()
    assert seen and set(seen) == {torch.device(dev).type}  # block 1 ran on the device
    assert all(p.device.type == "cpu" for p in blocks.parameters())  # and went back home
    assert mover.moves > 2 * len(blocks)
    (p0, w0, s0, q0), (p1, w1, s1, q1) = out["res"], out["off"]
    exact = dev == "cpu"
    for a, b in ((w0, w1), (s0, s1)):
        for n in a:
            assert torch.equal(a[n], b[n]) if exact else torch.allclose(a[n], b[n], atol=1e-5), n
    assert (p0, q0) == (p1, q1) if exact else abs(p0 - p1) < 1e-3 * p0


def test_offload_refuses_gradients(tokenizer, corpus, tmp_path, one_thread):
    _, off_lm = _pair("cpu", tokenizer)
    e = Evaluator(calib=calib(corpus), cache_dir=tmp_path, lm=off_lm)
    with pytest.raises(UserError, match="offload"):
        e.features.get("G")


@pytest.fixture
def saved_dir(tmp_path):
    make_llama().save_pretrained(tmp_path / "m")
    make_tokenizer().save_pretrained(tmp_path / "m")
    return str(tmp_path / "m")


def test_device_map_cpu_gives_the_same_results(saved_dir, corpus, tmp_path, one_thread):
    evc = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4)
    recs = []
    for kw in ({}, {"device_map": "cpu"}, {"offload": True}):
        e = Evaluator(saved_dir, calib(corpus), cache_dir=tmp_path / "cache", **kw)
        tree = "mul(W, sqrt(X))" if kw.get("offload") else TREES[3]
        recs.append(e.evaluate(parse_prefix(tree), 0.5, UNSTRUCTURED, evc)["ppl"])
        if not kw.get("offload"):
            continue
        plain = Evaluator(saved_dir, calib(corpus), cache_dir=tmp_path / "cache")
        recs.append(plain.evaluate(parse_prefix(tree), 0.5, UNSTRUCTURED, evc)["ppl"])
    assert recs[0] == recs[1] and recs[2] == recs[3]


def test_device_map_reaches_from_pretrained(saved_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen, real = [], AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_model(saved_dir, device_map="balanced")
    load_model(saved_dir)
    assert seen == ["balanced", None]


def test_device_map_with_offloaded_modules_is_refused(saved_dir, tmp_path):
    from accelerate import dispatch_model

    lm = load_model(saved_dir)
    split = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
             "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    model = dispatch_model(lm.model, split, main_device="cpu", offload_dir=str(tmp_path / "off"))
    assert any(p.device.type == "meta" for p in model.parameters())
    with pytest.raises(UserError, match="offload"):
        place_model(model, torch.device("cpu"), device_map="auto")


@pytest.mark.parametrize("kw,needle", [({"device_map": "everywhere"}, "device-map"),
                                       ({"device_map": "auto", "offload": True}, "not both")])
def test_bad_placement_is_a_user_error(kw, needle, saved_dir):
    with pytest.raises(UserError, match=needle):
        load_model(saved_dir, **kw)


def test_abs_weight_reads_the_live_weight_only_while_it_is_dense(tokenizer, corpus, tmp_path,
                                                                 one_thread):
    model = make_llama()
    e = Evaluator(calib=calib(corpus), cache_dir=tmp_path, lm=loaded(model, tokenizer))
    name, lin = next(iter(e.linears.items()))
    orig = lin.weight.detach().clone()
    assert e.dense.current_if_dense(name).data_ptr() == lin.weight.data_ptr()  # no copy
    e.prune(parse_prefix("W"), 0.5, UNSTRUCTURED)  # in place: the version counter moves
    assert e.dense.current_if_dense(name).data_ptr() != lin.weight.data_ptr()
    assert torch.equal(e.abs_weight(name), orig.abs())  # |dense W|, not |pruned W|
    with torch.no_grad():
        lin.weight.mul_(1.0)  # any in-place write, even one that keeps the values
    assert e.dense.current_if_dense(name).data_ptr() != lin.weight.data_ptr()
    e.restore()
    assert e.dense.current_if_dense(name).data_ptr() == lin.weight.data_ptr()
    assert torch.equal(e.abs_weight(name), orig.abs())
