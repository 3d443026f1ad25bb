import math

import torch

from gpsearch.fitness.perplexity import perplexity, perplexity_from_losses
from tests.conftest import make_llama


def test_perplexity_matches_hand_computation():
    model = make_llama()
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(0, 128, (5, 12), generator=g)
    out = perplexity(model, windows, batch_size=2)
    # hand computation: per window, mean over positions of -log softmax(logits)[next token]
    total = 0.0
    with torch.no_grad():
        for w in windows:
            logits = model(input_ids=w[None]).logits[0]
            logp = torch.log_softmax(logits.double(), dim=-1)
            nll = -sum(float(logp[t, w[t + 1]]) for t in range(len(w) - 1)) / (len(w) - 1)
            total += nll * len(w)
    expected = math.exp(total / (5 * 12))
    assert out["windows"] == 5 and out["seqlen"] == 12 and out["tokens"] == 60
    assert abs(out["ppl"] - expected) / expected < 1e-4


def test_perplexity_is_batch_size_invariant():
    model = make_llama()
    windows = torch.randint(0, 128, (6, 10), generator=torch.Generator().manual_seed(1))
    a = perplexity(model, windows, batch_size=1)["ppl"]
    b = perplexity(model, windows, batch_size=4)["ppl"]
    assert abs(a - b) / a < 1e-5


def test_overflow_is_inf_not_error():
    assert perplexity_from_losses(torch.tensor([1e6, 1.0], dtype=torch.float64), 8) == float("inf")
    assert perplexity_from_losses(torch.tensor([float("nan")], dtype=torch.float64),
                                  8) == float("inf")
    assert abs(perplexity_from_losses(torch.tensor([0.0, 2.0], dtype=torch.float64), 8)
               - math.e) < 1e-12
