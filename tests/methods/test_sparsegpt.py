"""Block-sequential SparseGPT: exact sparsity, agreement with an independent sequential reference,
shared Hessians and early stop changing nothing, lower reconstruction error than Wanda."""

import pytest
import torch

from gpsearch.config import CalibConfig
from gpsearch.methods.sparsegpt import SharedHessians, prune_sparsegpt
from gpsearch.methods.sparsegpt_math import sparsegpt_prune
from gpsearch.methods.wanda import wanda_mask
from gpsearch.model.blocks import block_linears, decoder_blocks
from gpsearch.model.blockwise import capture_block_inputs, feed_block
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from tests.conftest import loaded, make_llama, make_opt
from tests.seqref import layer_inputs, recon_error, scaler_row, sequential_reference


def _evaluator(lm, corpus, tmp_path, nsamples=8):
    calib = CalibConfig(data=corpus, nsamples=nsamples, seqlen=32, batch_size=4)
    return Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=lm)


@pytest.mark.parametrize("pattern", ["unstructured", "2:4", "4:8"])
def test_exact_sparsity_every_linear(tiny_lm, corpus, tmp_path, pattern):
    ev = _evaluator(tiny_lm, corpus, tmp_path)
    pat = parse_pattern(pattern, 0.5)
    info = prune_sparsegpt(ev, 0.5, pat)
    for name, lin in ev.linears.items():
        w = lin.weight
        assert int((w == 0).sum()) == w.numel() // 2, name
        if pat.kind == "nm":
            groups = (w == 0).reshape(w.shape[0], -1, pat.m).sum(-1)
            assert bool((groups == pat.n).all()), name
    assert info["calibration"] == ev.calib.to_dict() and info["prune_s"] > 0
    assert torch.equal(ev.model.get_input_embeddings().weight,
                       tiny_lm.model.get_input_embeddings().weight)


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_matches_independent_sequential_reference(make, tokenizer, corpus, tmp_path):
    ev = _evaluator(loaded(make(), tokenizer), corpus, tmp_path)
    ref_model = make()
    samples = ev.features.samples()
    pat = parse_pattern("unstructured")

    def prune_block(i, linears, inputs):
        for name, lin in linears.items():
            x = inputs[name].double()
            h = (2.0 / samples.shape[0]) * x.T @ x
            new_w, _ = sparsegpt_prune(lin.weight.detach(), h.float(), 0.5)
            lin.weight.data.copy_(new_w)

    sequential_reference(ref_model, samples, prune_block)
    prune_sparsegpt(ev, 0.5, pat)
    ref = dict(ref_model.named_parameters())
    for name, p in ev.model.named_parameters():
        same_mask = float(((p == 0) == (ref[name] == 0)).float().mean())
        assert same_mask > 0.995, name
        assert torch.allclose(p, ref[name], atol=2e-3, rtol=1e-3), name


def test_shared_hessians_and_early_stop_change_nothing(tokenizer, corpus, tmp_path):
    ev = _evaluator(loaded(make_llama(), tokenizer), corpus, tmp_path)
    inputs = capture_block_inputs(ev.model, ev.features.samples(), 4)
    block = decoder_blocks(ev.model)[0]
    linears = block_linears(block)
    shared = SharedHessians(linears)
    feed_block(block, inputs, linears, shared.add, stop_early=True)
    assert ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"] in shared.groups()
    full = {}
    feed_block(block, inputs, linears,
               lambda b, n, x: full.setdefault(n, []).append(x.reshape(-1, x.shape[-1])),
               stop_early=False)
    for name in linears:
        x = torch.cat(full[name]).double()
        expect = 2.0 * x.T @ x / ev.calib.nsamples
        assert torch.allclose(shared.hessian(name).double(), expect, rtol=1e-4, atol=1e-5), name


def test_reconstruction_error_below_wanda_first_block(tiny_lm, corpus, tmp_path):
    ev = _evaluator(tiny_lm, corpus, tmp_path, nsamples=16)
    samples = ev.features.samples()
    dense = {n: lin.weight.detach().clone()
             for n, lin in block_linears(decoder_blocks(ev.model)[0]).items()}
    inputs = layer_inputs(ev.model, samples, 0)
    prune_sparsegpt(ev, 0.5, parse_pattern("unstructured"))
    pruned = block_linears(decoder_blocks(ev.model)[0])
    for name, w in dense.items():
        x = inputs[name]
        w_wanda = w.masked_fill(wanda_mask(w, scaler_row(x, samples.shape[0]), 0.5,
                                           parse_pattern("unstructured")), 0.0)
        e_sgpt, e_wanda = recon_error(w, pruned[name].weight, x), recon_error(w, w_wanda, x)
        assert e_sgpt < e_wanda, (name, e_sgpt, e_wanda)


def test_bad_knobs_rejected(tiny_lm, corpus, tmp_path):
    ev = _evaluator(tiny_lm, corpus, tmp_path)
    with pytest.raises(ValueError):
        prune_sparsegpt(ev, 0.5, parse_pattern("unstructured"), percdamp=0.0)


@pytest.mark.integration
def test_embedded_block0_sparsegpt_error_below_wanda(embedded_lm):
    from gpsearch.model.data import token_stream

    lm = embedded_lm
    stream = token_stream(lm.tokenizer, "wiki", "validation")  # real text, 8x faster to tokenize
    starts = torch.randint(0, stream.numel() - 64, (8,), generator=torch.Generator().manual_seed(0))
    samples = torch.stack([stream[s:s + 64] for s in starts.tolist()])
    inputs = capture_block_inputs(lm.model, samples, 4)
    block = decoder_blocks(lm.model)[0]
    linears = block_linears(block)
    shared = SharedHessians(linears)
    raw = {}
    feed_block(block, inputs, linears,
               lambda b, n, x: (shared.add(b, n, x),
                                raw.setdefault(n, []).append(x.reshape(-1, x.shape[-1]))))
    pat = parse_pattern("unstructured")
    for name, lin in linears.items():
        w, x = lin.weight.detach(), torch.cat(raw[name])
        w_sgpt, _ = sparsegpt_prune(w, shared.hessian(name), 0.5)
        w_wanda = w.masked_fill(wanda_mask(w, scaler_row(x, samples.shape[0]), 0.5, pat), 0.0)
        assert recon_error(w, w_sgpt, x) < recon_error(w, w_wanda, x), name
