import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.methods.structured.surgery import param_count, save_structured
from gpsearch.methods.structured.width import select_keep, width_prune
from gpsearch.model.blocks import decoder_blocks
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama, make_opt

CALIB = dict(nsamples=4, seqlen=16, batch_size=2)


def evaluator(model, tokenizer, corpus, tmp_path):
    return Evaluator(calib=CalibConfig(data=corpus, **CALIB), cache_dir=tmp_path / "c",
                     lm=loaded(model, tokenizer))


def rows_in(small: torch.Tensor, big: torch.Tensor) -> list[int]:
    """Which rows of ``big`` the rows of ``small`` are (exact match)."""
    return [int((big == r).all(dim=1).nonzero()[0]) for r in small]


def test_wanda_importance_by_hand_and_sliced_equals_masked(tokenizer, corpus, tmp_path):
    model = make_llama()
    ref = copy.deepcopy(model)
    ev = evaluator(model, tokenizer, corpus, tmp_path)
    X = ev.features.get("X")
    rec = width_prune(ev, "wanda", ratio=0.5, ranking="global")
    # importance by hand for layer 0: |W| * sqrt(X) summed over each unit's weights
    blk = decoder_blocks(ref)[0]
    s = {n: m.weight.detach().abs() * X[f"0.{n}"].sqrt() for n, m in blk.named_modules()
         if isinstance(m, torch.nn.Linear)}
    hd, qg = 8, 16  # head_dim 8; 2 query heads per KV group
    groups = [float(s["self_attn.q_proj"][g * qg:(g + 1) * qg].sum()
                    + s["self_attn.k_proj"][g * hd:(g + 1) * hd].sum()
                    + s["self_attn.v_proj"][g * hd:(g + 1) * hd].sum()
                    + s["self_attn.o_proj"][:, g * qg:(g + 1) * qg].sum())
              for g in range(2)]
    chans = [float(s["mlp.gate_proj"][c].sum() + s["mlp.up_proj"][c].sum()
                   + s["mlp.down_proj"][:, c].sum())
             for c in range(64)]
    # half of all 4 groups and all 128 channels go; each layer keeps its best group
    assert sum(len(k) for k in rec["attention_groups_kept"]) == 2
    assert sum(rec["mlp_channels_kept"]) == 64
    small = decoder_blocks(model)[0]
    kept_ch = rows_in(small.mlp.gate_proj.weight, blk.mlp.gate_proj.weight)
    assert kept_ch == sorted(kept_ch) and len(kept_ch) == rec["mlp_channels_kept"][0]
    kept_g = [i // hd
              for i in rows_in(small.self_attn.k_proj.weight, blk.self_attn.k_proj.weight)[::hd]]
    assert kept_g == rec["attention_groups_kept"][0] == [max(range(2), key=lambda g: groups[g])]
    dropped = [c for c in range(64) if c not in kept_ch]
    if dropped and kept_ch:  # layer-0 channels that went score below every layer-0 channel kept
        assert max(chans[c] for c in dropped) <= min(chans[c] for c in kept_ch) + 1e-4
    # the sliced model computes what the unsliced one does with those units zeroed
    with torch.no_grad():
        for big, sm in zip(decoder_blocks(ref), decoder_blocks(model)):
            a, m = big.self_attn, big.mlp
            kg = [i // hd for i in rows_in(sm.self_attn.k_proj.weight, a.k_proj.weight)[::hd]]
            for g in set(range(2)) - set(kg):
                a.q_proj.weight[g * qg:(g + 1) * qg] = 0
                a.k_proj.weight[g * hd:(g + 1) * hd] = 0
                a.v_proj.weight[g * hd:(g + 1) * hd] = 0
                a.o_proj.weight[:, g * qg:(g + 1) * qg] = 0
            kc = rows_in(sm.mlp.gate_proj.weight, m.gate_proj.weight)
            gone = [c for c in range(64) if c not in kc]
            m.gate_proj.weight[gone] = 0
            m.up_proj.weight[gone] = 0
            m.down_proj.weight[:, gone] = 0
        ids = torch.randint(0, 128, (3, 12))
        assert torch.allclose(model(input_ids=ids).logits, ref(input_ids=ids).logits, atol=1e-5)
    assert rec["params_after"] == param_count(model) < rec["params_before"]


@pytest.mark.parametrize("ranking,remote", [("global", True), ("layer", False)])
def test_saved_width_model_reloads(ranking, remote, tokenizer, corpus, tmp_path):
    cfg = make_llama().config
    cfg.num_hidden_layers = 3
    model = type(make_llama())(cfg).eval()
    ev = evaluator(model, tokenizer, corpus, tmp_path)
    rec = width_prune(ev, "taylor", ratio=0.3, ranking=ranking, n_remove_layers=1)
    assert len(rec["removed_layers"]) == 1 and model.config.num_hidden_layers == 2
    windows = ev.windows(EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3))
    ppl = perplexity(model, windows)["ppl"]
    out = save_structured(ev.lm, tmp_path / "saved", rec)
    assert (out / "gpsearch_pruned_modeling.py").exists() == remote
    re = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=remote).eval()
    assert param_count(re) == rec["params_after"]
    assert abs(perplexity(re, windows)["ppl"] - ppl) / ppl < 1e-5
    if not remote:
        assert re.config.intermediate_size == 64 - round(0.3 * 64)


def test_select_keep_rules():
    a, b = torch.tensor([5.0, 1.0, 2.0]), torch.tensor([0.5, 0.4])
    # global: 2 of 5 go; layer 1's best (0.5) is protected, so 0.4 and 1.0 go
    assert [k.tolist() for k in select_keep([a, b], 0.4)] == [[0, 2], [0]]
    assert [k.tolist() for k in select_keep([a, b], 0.8)] == [[0], [0]]  # only the protected stay
    assert [k.tolist() for k in select_keep([a, b], 0.4, "layer")] == [[0, 2], [0]]
    with pytest.raises(UserError):
        select_keep([a], 1.0)


def test_opt_is_refused(tokenizer, corpus, tmp_path):
    with pytest.raises(UserError, match="LLaMA-style"):
        width_prune(evaluator(make_opt(), tokenizer, corpus, tmp_path), "wanda", 0.2)


def test_cli_structured_width_saves_a_smaller_model(tokenizer, corpus, tmp_path, capsys):
    from gpsearch.cli import main

    model_dir = tmp_path / "tiny"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    args = ["structured", "--method", "width", "--importance", "wanda", "--pruning-ratio", "0.25",
            "--model", str(model_dir), "--data", corpus, "--nsamples", "4", "--seqlen", "16",
            "--max-windows", "2", "--cache-dir", str(tmp_path / "c"),
            "--save", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out and "fewer" in out
    re = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True)
    assert param_count(re) < param_count(make_llama())
    assert main(args) == 2  # --save directory not empty
