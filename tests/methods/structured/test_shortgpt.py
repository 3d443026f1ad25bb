import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.methods.structured.shortgpt import block_influence, lowest, shortgpt
from gpsearch.methods.structured.surgery import param_count, save_structured
from gpsearch.model.blocks import decoder_blocks
from gpsearch.model.data import calibration_samples, eval_windows
from tests.conftest import make_llama, make_opt


def bi_by_hand(model, samples):
    """Hooks on every layer of a normal forward: 1 - mean token cosine of input and output."""
    pairs = []

    def hook(mod, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        y = out[0] if isinstance(out, tuple) else out
        pairs.append((len(pairs) % len(blocks), x.detach(), y.detach()))

    blocks = decoder_blocks(model)
    hs = [b.register_forward_hook(hook, with_kwargs=True) for b in blocks]
    with torch.no_grad():
        for s in samples:  # one sample at a time: a different batching than the code under test
            model(input_ids=s[None])
    for h in hs:
        h.remove()
    sums = torch.zeros(len(blocks), dtype=torch.float64)
    counts = torch.zeros(len(blocks))
    for i, x, y in pairs:
        c = F.cosine_similarity(x.double(), y.double(), dim=-1)
        sums[i] += c.sum()
        counts[i] += c.numel()
    return 1 - sums / counts


def deeper(make):
    """A 4-layer version of a tiny test model, with one nearly inert layer (index 2)."""
    model = make()
    cfg = model.config
    cfg.num_hidden_layers = 4
    model = type(model)(cfg).eval()
    with torch.no_grad():
        for p in decoder_blocks(model)[2].parameters():
            if p.dim() == 2:
                p.mul_(0.01)
    return model


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_block_influence_matches_hooks_and_drops_the_inert_layer(make, tokenizer, corpus, tmp_path):
    torch.manual_seed(0)
    model = deeper(make)
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    samples = calibration_samples(tokenizer, calib)
    bi = block_influence(model, samples, calib.batch_size)
    assert torch.allclose(bi, bi_by_hand(model, samples), atol=1e-6)
    assert int(bi.argmin()) == 2
    windows = eval_windows(tokenizer,
                           EvalConfig(data=corpus, split="test", seqlen=16, max_windows=3))
    keep_ids = [id(b) for i, b in enumerate(decoder_blocks(model)) if i != 2]
    before = param_count(model)

    from tests.conftest import loaded
    lm = loaded(model, tokenizer)
    rec = shortgpt(lm, calib, 1)
    assert rec["removed_layers"] == [2] and model.config.num_hidden_layers == 3
    assert [id(b) for b in decoder_blocks(model)] == keep_ids
    layer_idx = [m.layer_idx for m in model.modules() if hasattr(m, "layer_idx")]
    assert sorted(set(layer_idx)) == [0, 1, 2]
    assert rec["params_after"] == param_count(model) < before
    ppl = perplexity(model, windows)["ppl"]
    out = save_structured(lm, tmp_path / "saved", rec)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()  # no remote code needed
    assert reloaded.config.num_hidden_layers == 3
    assert abs(perplexity(reloaded, windows)["ppl"] - ppl) / ppl < 1e-5


def test_lowest_and_bounds():
    bi = torch.tensor([0.3, 0.1, 0.2, 0.1])
    assert lowest(bi, 2) == [1, 3]
    assert lowest(bi, 0) == []
    with pytest.raises(UserError):
        lowest(bi, 4)
