import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.jobs.compare.run import CompareConfig, plan, run_compare
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama


def test_seed_methods_in_compare_and_model_restored(tokenizer, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "c", lm=loaded(make_llama(), tokenizer))
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=2)
    dense_state = {n: p.detach().clone() for n, p in ev.model.named_parameters()}
    methods = ["tiers", "shortgpt", "width-taylor", "width-wanda", "slimgpt", "shortgpt+lora",
               "wanda+lora"]
    cfg = CompareConfig(methods=methods, sparsities=[0.3], out=str(tmp_path / "out"), calib=calib,
                        evaluation=evc, options={
                            "tiers": {"max_steps": 1, "batch_size": 2},
                            "shortgpt+lora": {"lora_max_steps": 2, "lora_batch_size": 2},
                            "wanda+lora": {"lora_max_steps": 2, "lora_batch_size": 2}})
    plan(cfg)
    res = run_compare(cfg, evaluator=ev, progress=False, log=lambda s: None)
    rows = {r["method"]: r for r in res["rows"]}
    assert all(rows[m]["error"] is None for m in methods), {m: rows[m]["error"] for m in methods}
    assert rows["tiers"]["info"]["iterations"] == 4  # example schedule: 0.342 is the first >= 0.28
    tiers = rows["tiers"]  # tiny matrices of 2-8 blocks: whole-block rounding moves the shares
    assert tiers["achieved_sparsity"] == tiers["info"]["history"][-1]["sparsity_after_finetune"]
    assert 0.2 < tiers["achieved_sparsity"] < 0.45
    assert (rows["shortgpt"]["info"]["removed_layers"]
            and rows["shortgpt"]["achieved_sparsity"] == 0.5)
    for m in ("width-taylor", "width-wanda", "slimgpt"):
        assert 0.1 < rows[m]["achieved_sparsity"] < 0.6
        assert rows[m]["info"]["params_after"] < rows[m]["info"]["params_before"]
    assert (rows["wanda+lora"]["achieved_sparsity"]
            == rows["wanda+lora"]["info"]["lora"]["sparsity_after"])
    assert abs(rows["wanda+lora"]["achieved_sparsity"] - 0.3) < 0.02  # int(0.3 * 32) per row
    assert rows["shortgpt+lora"]["ppl"] != rows["shortgpt"]["ppl"]
    # the evaluator's model is the dense one again, every parameter
    assert all(torch.equal(p, dense_state[n]) for n, p in ev.model.named_parameters())
    assert abs(ev.perplexity(evc)["ppl"] - rows["dense"]["ppl"]) < 1e-9
