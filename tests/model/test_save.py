import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.fitness.perplexity import perplexity
from gpsearch.model.save import save_pruned
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import parse_prefix


def test_saved_model_reloads_with_same_perplexity(tiny_lm, corpus, tmp_path):
    ev = Evaluator(calib=CalibConfig(data=corpus, nsamples=4, seqlen=16), cache_dir=tmp_path,
                   lm=tiny_lm)
    evc = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=4)
    rec = ev.evaluate(parse_prefix("mul(W, sqrt(X))"), 0.5, parse_pattern("2:4", 0.5), evc,
                      keep=True)
    out = save_pruned(ev.lm, tmp_path / "saved", rec)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    AutoTokenizer.from_pretrained(out)
    again = perplexity(reloaded, ev.windows(evc))["ppl"]
    assert abs(again - rec["ppl"]) / rec["ppl"] < 1e-5
    assert json.loads((out / "gpsearch_record.json").read_text())["tree"] == "mul(W, sqrt(X))"
    zeros = [(m.weight == 0).float().mean().item() for n, m in reloaded.named_modules()
             if isinstance(m, torch.nn.Linear) and "layers" in n]
    assert all(abs(z - 0.5) < 1e-6 for z in zeros)
