import copy

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.methods.lora import (
    LoraSettings,
    add_adapters,
    block_linear_names,
    lora_recover,
    masked_merge,
)
from gpsearch.model.blocks import prunable_linears
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import parse_prefix


def pruned(tiny_lm, corpus, tmp_path):
    ev = Evaluator(calib=CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2),
                   cache_dir=tmp_path, lm=tiny_lm)
    ev.prune(parse_prefix("mul(W, sqrt(X))"), 0.5, parse_pattern("unstructured"))
    return ev


SETTINGS = LoraSettings(lr=5e-3, max_steps=4, batch_size=2, seqlen=16)


def test_masked_merge_keeps_zeros_naive_merge_does_not(tiny_lm, corpus, tmp_path):
    ev = pruned(tiny_lm, corpus, tmp_path)
    model = ev.model
    zeros = {n: m.weight == 0 for n, m in prunable_linears(model).items()}
    windows = ev.windows(EvalConfig(data=corpus, split="test", seqlen=16, max_windows=2))
    merged, rec = lora_recover(model, ev.lm.tokenizer, SETTINGS,
                               measure=lambda m: perplexity(m, windows)["ppl"])
    assert type(merged) is type(model) and rec["train"]["steps"] == 4
    assert not any("lora" in n for n, _ in merged.named_modules())
    after = prunable_linears(merged)
    assert all(torch.equal(after[n].weight == 0, z) for n, z in zeros.items())
    assert rec["sparsity_after"] == pytest.approx(rec["sparsity_before"]) == pytest.approx(0.5)
    assert rec["naive_merge_sparsity_of_adapted"] < 0.01  # merging naively fills the zeros
    assert rec["ppl_after"] != rec["ppl_before"]
    assert rec["trainable_params"] > 0


def test_naive_merge_lowers_sparsity_by_hand(tokenizer, corpus, tmp_path):
    from tests.conftest import loaded, make_llama

    ev = pruned(loaded(make_llama(), tokenizer), corpus, tmp_path)
    model = ev.model
    masks = {n: m.weight.detach() == 0 for n, m in prunable_linears(model).items()}
    assert len(block_linear_names(model)) == len(masks)
    pm = add_adapters(model, SETTINGS)
    from peft.tuners.lora import LoraLayer
    assert sum(isinstance(m, LoraLayer) for m in pm.modules()) == len(masks)
    with torch.no_grad():  # stand-in for training: give every adapter a non-zero B
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    naive = copy.deepcopy(pm).merge_and_unload()
    s_naive = sum(int((m.weight == 0).sum()) for m in prunable_linears(naive).values())
    merged = masked_merge(pm, masks)
    lin = prunable_linears(merged)
    assert all(torch.equal(lin[n].weight == 0, m) for n, m in masks.items())
    assert s_naive < sum(int(m.sum()) for m in masks.values()) // 100
    # away from the zeros, the merge is W + (alpha / r) B A
    name = next(iter(masks))
    assert not torch.equal(lin[name].weight[~masks[name]], ev.dense[name][~masks[name]])


def test_settings_checked():
    with pytest.raises(UserError):
        LoraSettings(r=0)


def test_cli_lora_on_a_saved_pruned_model(tokenizer, corpus, tmp_path, capsys):
    import json

    from gpsearch.cli import main
    from tests.conftest import make_llama

    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = ["--data", corpus, "--seqlen", "16", "--max-windows", "2", "--cache-dir", str(tmp_path)]
    assert main(["prune", "--tree", "wanda", "--sparsity", "0.5", "--model", str(model_dir),
                 "--nsamples", "4", "--save", str(tmp_path / "pruned")] + data) == 0
    assert main(["lora", "--model", str(tmp_path / "pruned"), "--max-steps", "2",
                 "--train-batch-size", "2", "--json", str(tmp_path / "rec.json"),
                 "--save", str(tmp_path / "merged")] + data) == 0
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["sparsity_after"] == rec["sparsity_before"] == pytest.approx(0.5)
    assert "merged (zeros kept)" in capsys.readouterr().out
    from transformers import AutoModelForCausalLM
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    w = prunable_linears(again)
    assert sum(int((m.weight == 0).sum()) for m in w.values()) == \
        sum(m.weight.numel() for m in w.values()) // 2
