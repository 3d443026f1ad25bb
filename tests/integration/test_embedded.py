"""Integration tests on the embedded SmolLM2-135M (GGUF) and the embedded Wikipedia corpus."""

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import load_tree

pytestmark = pytest.mark.integration
CALIB = CalibConfig(data="wiki", nsamples=8, seqlen=64, batch_size=4)
EVC = EvalConfig(data="wiki", split="validation", seqlen=64, max_windows=8)


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory, embedded_lm):
    from gpsearch.pruning.evaluator import Evaluator

    return Evaluator(calib=CALIB, cache_dir=tmp_path_factory.mktemp("cache"), lm=embedded_lm)


def test_embedded_model_shape_and_dense_perplexity(evaluator):
    assert len(evaluator.linears) == 30 * 7
    assert evaluator.model.lm_head.weight is evaluator.model.model.embed_tokens.weight
    ppl = evaluator.perplexity(EVC)["ppl"]
    assert 5 < ppl < 60, ppl


def test_wanda_beats_magnitude_and_embeddings_untouched(evaluator):
    emb = evaluator.model.model.embed_tokens.weight.clone()
    pat = parse_pattern("unstructured")
    mag = evaluator.evaluate(load_tree("magnitude"), 0.5, pat, EVC)
    wanda = evaluator.evaluate(load_tree("wanda"), 0.5, pat, EVC)
    assert wanda["ppl"] < mag["ppl"]
    assert abs(wanda["achieved_sparsity"] - 0.5) < 1e-3
    assert torch.equal(emb, evaluator.model.model.embed_tokens.weight)


def test_gguf_model_saves_and_reloads(evaluator, tmp_path):
    from transformers import AutoModelForCausalLM

    from gpsearch.fitness.perplexity import perplexity
    from gpsearch.model.save import save_pruned

    rec = evaluator.evaluate(load_tree("wanda"), 0.5, parse_pattern("2:4", 0.5), EVC, keep=True)
    try:
        out = save_pruned(evaluator.lm, tmp_path / "m", rec)
    finally:
        evaluator.restore()
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    again = perplexity(reloaded, evaluator.windows(EVC))["ppl"]
    assert abs(again - rec["ppl"]) / rec["ppl"] < 1e-4
