import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.methods.structured.slimgpt import (
    allocate,
    collect_hessian,
    layer_ratios,
    obs_prune,
    slimgpt,
)
from gpsearch.methods.structured.surgery import param_count, save_structured
from gpsearch.model.blocks import decoder_blocks
from gpsearch.model.blockwise import capture_block_inputs
from gpsearch.model.data import calibration_samples, eval_windows
from tests.conftest import loaded, make_llama, make_opt


def lstsq_fit(w, x, removed):
    """Best W' with the removed columns zero, by least squares on the data: W' X ~ W X."""
    keep = [j for j in range(w.shape[1]) if j not in removed]
    sol = torch.linalg.lstsq(x[:, keep], x @ w.T).solution.T  # x: [tokens, in]
    out = torch.zeros_like(w)
    out[:, keep] = sol
    return out, float(((x @ out.T - x @ w.T) ** 2).sum())


def test_obs_matches_least_squares():
    torch.manual_seed(0)
    x = torch.randn(200, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    w = torch.randn(5, 6, dtype=torch.float64)
    h = x.T @ x
    keep, got = obs_prune(w, h, size=1, n_remove=1, rounds=1, percdamp=0.0)
    errs = [lstsq_fit(w, x, [j])[1] for j in range(6)]
    best = min(range(6), key=lambda j: errs[j])
    assert sorted(set(range(6)) - set(keep.tolist())) == [best]
    assert torch.allclose(got, lstsq_fit(w, x, [best])[0], atol=1e-8)
    # groups of 2 columns, two greedy rounds: the result is the LS optimum for the chosen set
    keep, got = obs_prune(w, h, size=2, n_remove=2, rounds=2, percdamp=0.0)
    removed = [c for g in range(3) if g not in keep.tolist() for c in (2 * g, 2 * g + 1)]
    assert len(removed) == 4
    assert torch.allclose(got, lstsq_fit(w, x, removed)[0], atol=1e-8)
    first = min(range(3), key=lambda g: lstsq_fit(w, x, [2 * g, 2 * g + 1])[1])
    assert first not in keep.tolist()


def test_allocation_and_ratios():
    assert allocate([0.2] * 3, [3, 3, 3]) == [0, 1, 1]  # 1.8 -> 2, deeper layers first on ties
    assert allocate([0.5, 0.9], [4, 2]) == [3, 1]  # layer 1 keeps one unit; its share moves on
    r = layer_ratios(0.3, 4, "log")
    assert r == sorted(r) and abs(sum(r) / 4 - 0.3) < 1e-12
    assert layer_ratios(0.3, 2) == [0.3, 0.3]
    with pytest.raises(UserError):
        layer_ratios(0.3, 2, "cubic")


def test_hessian_token_cap(tokenizer, corpus):
    model = make_llama()
    samples = calibration_samples(tokenizer, CalibConfig(data=corpus, nsamples=4, seqlen=16))
    inputs = capture_block_inputs(model, samples, 2)
    block = decoder_blocks(model)[0]
    seen = []
    hk = block.mlp.down_proj.register_forward_hook(
        lambda m, a, o: seen.append(a[0].reshape(-1, 64)))
    with torch.no_grad():
        h = collect_hessian(block, block.mlp.down_proj, inputs, max_tokens=40)
    hk.remove()
    x = torch.cat(seen)[:40].double()
    assert torch.allclose(h, x.T @ x, atol=1e-9)


def test_slimgpt_compensates_and_reloads(tokenizer, corpus, tmp_path):
    model = make_llama()
    ref = copy.deepcopy(model)
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    lm = loaded(model, tokenizer)
    rec = slimgpt(lm, calib, ratio=0.5, rounds=4)
    assert rec["attention_groups_removed"] == [1, 1] and rec["mlp_channels_removed"] == [32, 32]
    assert rec["params_after"] == param_count(model) < rec["params_before"]
    # layer 0's MLP on its calibration inputs: the OBS-compensated down_proj reproduces the dense
    # output better than the same channels simply dropped
    samples = calibration_samples(tokenizer, calib)
    big, small = decoder_blocks(ref)[0].mlp, decoder_blocks(model)[0].mlp
    kept = [int((big.gate_proj.weight == r).all(1).nonzero()[0]) for r in small.gate_proj.weight]
    with torch.no_grad():
        acts = []
        hk = big.down_proj.register_forward_hook(lambda m, a, o: acts.append(a[0]))
        ref(input_ids=samples)
        hk.remove()
        a = acts[0].reshape(-1, 64)
        dense = big.down_proj(a)
        obs = small.down_proj(a[:, kept])
        naive = a[:, kept] @ big.down_proj.weight[:, kept].T
        assert (obs - dense).pow(2).sum() < 0.9 * (naive - dense).pow(2).sum()
    windows = eval_windows(tokenizer,
                           EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3))
    ppl = perplexity(model, windows)["ppl"]
    out = save_structured(lm, tmp_path / "saved", rec)
    re = AutoModelForCausalLM.from_pretrained(out).eval()  # uniform shapes: plain config
    assert re.config.intermediate_size == 32 and re.config.num_key_value_heads == 1
    assert abs(perplexity(re, windows)["ppl"] - ppl) / ppl < 1e-5


def test_slimgpt_refuses_opt(tokenizer, corpus):
    with pytest.raises(UserError, match="LLaMA-style"):
        slimgpt(loaded(make_opt(), tokenizer), CalibConfig(data=corpus, nsamples=2, seqlen=16), 0.2)
