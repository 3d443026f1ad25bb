"""Block-sequential reconstruction after any mask, on tiny LLaMA and OPT models: the mask is
unchanged, every linear equals an independent least-squares solve on inputs from a slow
full-model reference flow, and the layer outputs get closer to the dense ones."""

import pytest
import torch

from gpsearch.config import CalibConfig
from gpsearch.errors import UserError
from gpsearch.methods.recon import current_masks, prune_then_reconstruct, reconstruct_model
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import load_tree
from tests.conftest import loaded, make_llama, make_opt
from tests.seqref import layer_inputs, sequential_reference


def _evaluator(make, tokenizer, corpus, tmp_path, nsamples=8):
    calib = CalibConfig(data=corpus, nsamples=nsamples, seqlen=32, batch_size=4)
    return Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make(), tokenizer))


def _lstsq(w, x, mask, lam):
    """Independent damped least squares per row: [x_K; sqrt(lam) I_K] w_K ~ [x w; sqrt(lam) w]."""
    out = torch.zeros_like(w)
    eye = torch.eye(w.shape[1], dtype=w.dtype)
    for r in range(w.shape[0]):
        K = ~mask[r]
        A = torch.cat([x[:, K], lam.sqrt() * eye[:, K]])
        y = torch.cat([x @ w[r], lam.sqrt() * w[r]])
        out[r, K] = torch.linalg.lstsq(A, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return out


@pytest.mark.parametrize("make,pattern", [(make_llama, "unstructured"), (make_opt, "2:4")])
def test_equals_independent_sequential_lstsq(make, pattern, tokenizer, corpus, tmp_path):
    ev = _evaluator(make, tokenizer, corpus, tmp_path)
    pat = parse_pattern(pattern, 0.5)
    ev.prune(load_tree("wanda"), 0.5, pat, mode="sequential")
    masks = current_masks(ev)
    info = reconstruct_model(ev, masks, solver="cholesky")
    assert info["update"] == "recon" and info["recon_s"] > 0
    ref_model = make()
    samples = ev.features.samples()

    def prune_block(i, linears, inputs):  # inputs of the dense block i after reconstructed 0..i-1
        for name, lin in linears.items():
            x = inputs[name].double() * (2.0 / samples.shape[0]) ** 0.5
            H = x.T @ x
            lam = 0.01 * H.diagonal().mean()
            lin.weight.data.copy_(_lstsq(lin.weight.detach().double(), x, masks[f"{i}.{name}"],
                                         lam))

    sequential_reference(ref_model, samples, prune_block)
    ref = dict(ref_model.named_parameters())
    for name, p in ev.model.named_parameters():
        assert torch.allclose(p, ref[name], atol=2e-3, rtol=1e-3), name
    for name, lin in ev.linears.items():
        assert torch.equal(lin.weight == 0, masks[name]), name  # the mask never changes


@pytest.mark.parametrize("make", [make_opt])
def test_cg_default_lowers_layer_error_and_keeps_mask(make, tokenizer, corpus, tmp_path):
    ev = _evaluator(make, tokenizer, corpus, tmp_path)
    pat = parse_pattern("unstructured")
    info = prune_then_reconstruct(ev, lambda: ev.prune(load_tree("magnitude"), 0.5, pat) and None)
    assert info["recon"]["solver"] == "cg" and info["recon"]["mask_s"] >= 0
    recon = {n: lin.weight.detach().clone() for n, lin in ev.linears.items()}
    ev.restore()
    ev.prune(load_tree("magnitude"), 0.5, pat)
    masked = {n: lin.weight.detach().clone() for n, lin in ev.linears.items()}
    for name in recon:
        assert torch.equal(recon[name] == 0, masked[name] == 0), name
    ev.restore()
    x = layer_inputs(ev.model, ev.features.samples(), 0)  # block 0: the same inputs for both
    for name, inp in x.items():
        dense = ev.dense[f"0.{name}"]
        # called within this iteration only, so the late binding of dense/inp is harmless
        err = lambda w: float(((dense - w) @ inp.T).norm())  # noqa: E731, B023
        assert err(recon[f"0.{name}"]) < err(masked[f"0.{name}"]), name


def test_bad_options_and_missing_masks(tokenizer, corpus, tmp_path):
    ev = _evaluator(make_llama, tokenizer, corpus, tmp_path)
    masks = current_masks(ev)
    with pytest.raises(UserError):
        reconstruct_model(ev, masks, solver="svd")
    with pytest.raises(UserError):
        reconstruct_model(ev, masks, max_iter=0)
    with pytest.raises(ValueError):
        reconstruct_model(ev, {})


def test_one_flow_tree_mask_and_reconstruction_equal_reference(tokenizer, corpus, tmp_path):
    """tree_then_reconstruct: block i's Wanda mask from its inputs through the reconstructed
    blocks 0..i-1, then least squares under it: the same as a slow reference doing exactly that."""
    from gpsearch.methods.recon import tree_then_reconstruct
    from gpsearch.methods.wanda import wanda_mask
    from tests.seqref import scaler_row

    ev = _evaluator(make_llama, tokenizer, corpus, tmp_path)
    pat = parse_pattern("unstructured")
    info = tree_then_reconstruct(ev, load_tree("wanda"), 0.5, pat, "sequential", solver="cholesky")
    assert info["features"] == "sequential" and info["recon"]["solver"] == "cholesky"
    ref_model = make_llama()
    samples = ev.features.samples()
    n = samples.shape[0]

    def prune_block(i, linears, inputs):
        for name, lin in linears.items():
            x = inputs[name].double()
            mask = wanda_mask(lin.weight.detach(), scaler_row(x, n), 0.5, pat)
            xs = x * (2.0 / n) ** 0.5
            lam = 0.01 * (xs.T @ xs).diagonal().mean()
            lin.weight.data.copy_(_lstsq(lin.weight.detach().double(), xs, mask, lam))

    sequential_reference(ref_model, samples, prune_block)
    ref = dict(ref_model.named_parameters())
    for name, p in ev.model.named_parameters():
        same_mask = float(((p == 0) == (ref[name] == 0)).float().mean())
        assert same_mask > 0.995, name
        if same_mask == 1.0:
            assert torch.allclose(p, ref[name], atol=2e-3, rtol=1e-3), name
    for name, lin in ev.linears.items():
        zeros = lin.weight == 0
        assert bool((zeros.sum(1) == lin.in_features // 2).all()), name  # Wanda's per-row count
