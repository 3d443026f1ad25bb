"""Masked fine-tuning: pruned weights stay exactly zero at every step, the rest learns."""

import pytest
import torch

from gpsearch.errors import UserError
from gpsearch.methods.finetune import (
    FinetuneConfig,
    Finetuner,
    finetune,
    hold_masks,
    training_blocks,
    zero_masks,
)
from gpsearch.methods.magnitude import magnitude_mask
from gpsearch.model.blocks import prunable_linears
from gpsearch.pruning.masks import parse_pattern
from tests.conftest import make_llama, make_opt


def _pruned(model):
    linears = prunable_linears(model)
    with torch.no_grad():
        for lin in linears.values():
            lin.weight.masked_fill_(magnitude_mask(lin.weight, 0.5, parse_pattern("unstructured")),
                                    0.0)
    return linears, zero_masks(linears)


@pytest.mark.parametrize("make", [make_llama, make_opt])
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_masks_held_at_every_step(make, decay, tokenizer, corpus):
    model = make()
    linears, masks = _pruned(model)
    before = {n: lin.weight.detach().clone() for n, lin in linears.items()}
    checks = []

    def check(module, args, name=None):  # runs at every training forward
        checks.append(bool((module.weight[masks[name]] == 0).all()))

    handles = [lin.register_forward_pre_hook(lambda m, a, n=n: check(m, a, n))
               for n, lin in linears.items()]
    cfg = FinetuneConfig(lr=1e-2, batch_size=4, epochs=2, max_steps=3, seqlen=32,
                         weight_decay=decay, data=corpus)
    out = finetune(model, linears, masks, training_blocks(tokenizer, corpus, 32), cfg,
                   progress=False)
    for h in handles:
        h.remove()
    assert out["steps"] == 6 and len(out["epoch_loss"]) == 2
    assert checks and all(checks) and len(checks) == 6 * len(linears)
    for name, lin in linears.items():
        assert bool((lin.weight[masks[name]] == 0).all()), name
        assert not torch.equal(lin.weight[~masks[name]], before[name][~masks[name]]), name
        assert lin.weight.grad is None
    assert not model.training


def test_gradient_hooks_zero_pruned_gradients():
    model = make_llama()
    linears, masks = _pruned(model)
    handles = hold_masks(linears, masks)
    ids = torch.randint(0, 128, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    for name, lin in linears.items():
        assert bool((lin.weight.grad[masks[name]] == 0).all())
        assert bool((lin.weight.grad[~masks[name]] != 0).any())
    for h in handles:
        h.remove()


def test_loss_goes_down_and_runs_are_reproducible(tokenizer, corpus):
    blocks = training_blocks(tokenizer, corpus, 32)
    cfg = FinetuneConfig(lr=3e-3, batch_size=4, epochs=3, max_steps=4, seqlen=32, data=corpus)
    outs = []
    for _ in range(2):
        model = make_opt()  # has dropout: the seeded RNG must make the runs identical
        linears, masks = _pruned(model)
        outs.append((finetune(model, linears, masks, blocks, cfg, progress=False), model))
    (a, ma), (b, mb) = outs
    assert a["epoch_loss"] == b["epoch_loss"]
    assert a["epoch_loss"][-1] < a["epoch_loss"][0]
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


def test_finetuner_callable_and_config_checks(tokenizer, corpus):
    model = make_llama()
    _, masks = _pruned(model)
    tuner = Finetuner(tokenizer, FinetuneConfig(batch_size=2, epochs=1, max_steps=2, seqlen=32,
                                                data=corpus), progress=False)
    assert tuner(model, masks, epochs=1)["steps"] == 2
    assert tuner(model, masks, epochs=0)["steps"] == 0
    with pytest.raises(UserError):
        FinetuneConfig(lr=0)
    with pytest.raises(UserError):
        training_blocks(tokenizer, corpus, 10 ** 7)
