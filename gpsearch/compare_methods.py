"""More ``gpsearch compare`` methods: ``tiers`` (seed 004), ``shortgpt``, ``width-taylor``,
``width-wanda``, ``slimgpt`` (seed 002) and ``<any method>+lora`` (LoRA recovery, zeros kept).

How the compare ``sparsity`` maps onto each method (its knobs go in ``CompareConfig.options``):
- ``tiers``: runs the schedule (option ``schedule``, default schedules/tiers_example.csv) up to the
  first row whose implied sparsity reaches the requested one (within 0.02); metric option
  ``metric`` (default wanda), ``block_size``, ``topk``; fine-tuning options ``lr``,
  ``batch_size``, ``max_steps`` (per epoch), ``seqlen``, ``seed``.
- ``shortgpt``: removes round(sparsity * layers) layers (option ``n_remove_layers`` overrides).
- ``width-*``: the fraction of attention groups and MLP channels removed (``pruning_ratio``
  overrides; ``ranking``, ``n_remove_layers``); ``slimgpt``: the same ratio (``max_tokens``,
  ``schedule``, ``rounds``, ``percdamp``).
- ``+lora``: options prefixed ``lora_`` (``lora_r``, ``lora_max_steps``...) go to LoRA, the rest
  to the base method.
Structured methods prune a deep copy that replaces ``evaluator.model`` until ``cleanup``; their
"achieved sparsity" is the fraction of the block linears' weights removed (``info``). Methods that
fine-tune every parameter (tiers) snapshot the model and ``cleanup`` puts it back.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .models import LoadedModel, prunable_linears

EXAMPLE_SCHEDULE = Path(__file__).resolve().parent.parent / "schedules" / "tiers_example.csv"
_STASH: dict[int, dict] = {}  # id(evaluator) -> what cleanup puts back


def _linear_weights(model) -> int:
    return sum(m.weight.numel() for m in prunable_linears(model).values())


def _structured(run):
    """Wrap ``run(evaluator, lm_copy, sparsity, **options) -> record`` as a compare method fn."""
    def fn(evaluator, sparsity, pattern, **options):
        dense = evaluator.model
        clone = copy.deepcopy(dense)
        _STASH.setdefault(id(evaluator), {})["model"] = dense
        evaluator.model = clone
        lm = LoadedModel(clone, evaluator.lm.tokenizer, evaluator.lm.spec,
                         evaluator.lm.identity + "|structured")
        rec = run(evaluator, lm, sparsity, **options)
        rec["achieved_sparsity"] = 1 - _linear_weights(clone) / _linear_weights(dense)
        rec.pop("calibration", None)
        return rec
    return fn


def _shortgpt(evaluator, lm, sparsity, n_remove_layers=None):
    from .models import decoder_blocks
    from .structured.shortgpt import shortgpt

    n = n_remove_layers if n_remove_layers is not None else round(sparsity * len(decoder_blocks(lm.model)))
    return shortgpt(lm, evaluator.calib, int(n))


def _width(importance):
    def run(evaluator, lm, sparsity, pruning_ratio=None, **options):
        from .structured.width import width_prune

        ratio = sparsity if pruning_ratio is None else pruning_ratio
        return width_prune(evaluator, importance, ratio, model=lm.model, **options)
    return run


def _slimgpt(evaluator, lm, sparsity, pruning_ratio=None, **options):
    from .structured.slimgpt import slimgpt

    return slimgpt(lm, evaluator.calib, sparsity if pruning_ratio is None else pruning_ratio, **options)


def _tiers(evaluator, sparsity, pattern, schedule=None, metric="wanda", block_size=16, topk=10,
           **ft_options):
    from .baselines.finetune import Finetuner, FinetuneConfig
    from .errors import UserError
    from .tiers.tiers_run import run_tiers
    from .tiers.tiers_schedule import load_schedule
    from .tree import load_tree

    steps = load_schedule(schedule or EXAMPLE_SCHEDULE)
    reach = [i for i, s in enumerate(steps) if s.sparsity(block_size, topk) >= sparsity - 0.02]
    if not reach:
        raise UserError(f"the tiers schedule reaches only {steps[-1].sparsity(block_size, topk):.3f}")
    _STASH.setdefault(id(evaluator), {})["state"] = {
        n: p.detach().clone() for n, p in evaluator.model.named_parameters()}
    cfg = FinetuneConfig(**{"seqlen": evaluator.calib.seqlen, "data": evaluator.calib.data,
                            **ft_options})
    finetuner = Finetuner(evaluator.lm.tokenizer, cfg, progress=False)
    rec = run_tiers(evaluator, load_tree(metric), steps[:reach[0] + 1], None, finetuner,
                    block_size, topk, log=lambda s: None)
    return {"iterations": len(rec["history"]), "history": rec["history"], "finetune": cfg.to_dict()}


def cleanup(evaluator) -> None:
    """Put back what a method of this module replaced (model, non-linear parameters)."""
    stash = _STASH.pop(id(evaluator), {})
    if "model" in stash:
        evaluator.model = stash["model"]
    if "state" in stash:
        with torch.no_grad():
            for n, p in evaluator.model.named_parameters():
                p.copy_(stash["state"][n])


def lora_variant(base):
    """``<base>+lora``: the base method, then LoRA fine-tuning and a zero-keeping merge."""
    from .compare import Method

    def fn(evaluator, sparsity, pattern, **options):
        from .recovery.lora import LoraSettings, lora_recover

        lora = {k[5:]: v for k, v in options.items() if k.startswith("lora_")}
        info = base.fn(evaluator, sparsity, pattern,
                       **{k: v for k, v in options.items() if not k.startswith("lora_")}) or {}
        settings = LoraSettings(**{"seqlen": evaluator.calib.seqlen, "data": evaluator.calib.data,
                                   **lora})
        _, rec = lora_recover(evaluator.model, evaluator.lm.tokenizer, settings)
        return {**info, "lora": rec}

    def both(evaluator):
        if base.cleanup:
            base.cleanup(evaluator)
        cleanup(evaluator)

    return Method(f"{base.name}+lora", fn, f"{base.help}; then LoRA recovery (zeros kept)",
                  base.kinds, base.prepare, both, base.tree)


def _need_g(evaluator):
    evaluator.features.get("G")


def register_methods(register) -> None:
    """Add this module's methods with ``compare.register(name, fn, help, kinds, prepare, cleanup)``."""
    un = ("unstructured",)
    register("tiers", _tiers, "progressive three-tier blocks (dense/2:4/top-k) + masked fine-tuning",
             un, None, cleanup)
    register("shortgpt", _structured(_shortgpt), "remove the lowest Block Influence layers", un,
             None, cleanup)
    register("width-taylor", _structured(_width("taylor")), "attention groups + MLP channels, "
             "Taylor |W|*G importance, global ranking", un, _need_g, cleanup)
    register("width-wanda", _structured(_width("wanda")), "attention groups + MLP channels, "
             "Wanda |W|*sqrt(X) importance, global ranking", un, None, cleanup)
    register("slimgpt", _structured(_slimgpt), "structured OBS on o_proj/down_proj inputs", un,
             None, cleanup)
