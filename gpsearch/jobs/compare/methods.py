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
import dataclasses
import inspect

import torch

from gpsearch.io import ROOT
from gpsearch.model.blocks import prunable_linears
from gpsearch.model.load import LoadedModel

EXAMPLE_SCHEDULE = ROOT / "schedules" / "tiers_example.csv"
_STASH: dict[int, dict] = {}  # id(evaluator) -> what cleanup puts back


def knob_names(fn, skip=()) -> frozenset:
    """The keyword parameters of ``fn`` after (evaluator / lm, sparsity, pattern ...), minus
    ``skip``: the options a method accepts, read from its signature so they cannot drift."""
    fixed = {"evaluator", "lm", "sparsity", "pattern", "calib", "ratio", "importance", "model",
             "n_remove", "self"}
    return frozenset(n for n, p in inspect.signature(fn).parameters.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     and n not in fixed and n not in set(skip))


def _fields(cls, skip=()) -> set:
    return {f.name for f in dataclasses.fields(cls)} - set(skip)


# IterativeConfig fields that the comparison fixes (one model, one calibration config)
_ITERATIVE_FIXED = {"model", "target_sparsity", "data", "nsamples", "seqlen", "calib_seed",
                    "calib_batch_size", "dtype", "device"}


def _iterative(evaluator, sparsity, pattern, **knobs):
    """Seed 000: prune a fraction of the remaining weights, fine-tune, repeat, up to ``sparsity``;
    per-round perplexity on ``eval_split`` (``max_windows``) in a temporary run directory."""
    import tempfile

    from gpsearch.methods.iterative import IterativeConfig, run_iterative

    _STASH.setdefault(id(evaluator), {})["state"] = {
        n: p.detach().clone() for n, p in evaluator.model.named_parameters()}
    c = evaluator.calib
    cfg = IterativeConfig(**{"eval_split": "validation", "max_windows": 8, **knobs,
                             "model": evaluator.lm.spec, "target_sparsity": sparsity,
                             "data": c.data, "nsamples": c.nsamples, "seqlen": c.seqlen,
                             "calib_seed": c.seed, "calib_batch_size": c.batch_size})
    with tempfile.TemporaryDirectory() as tmp:
        state = run_iterative(cfg, save_dir=tmp, evaluator=evaluator, progress=False,
                              log=lambda s: None)
    hist = [{k: v for k, v in h.items() if k != "train"} for h in state["history"]]
    return {"rounds": len(hist), "history": hist, "iterative": cfg.to_dict()}


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
    from gpsearch.methods.structured.shortgpt import shortgpt
    from gpsearch.model.blocks import decoder_blocks

    n = (n_remove_layers if n_remove_layers is not None
         else round(sparsity * len(decoder_blocks(lm.model))))
    return shortgpt(lm, evaluator.calib, int(n))


def _width(importance):
    def run(evaluator, lm, sparsity, pruning_ratio=None, **options):
        from gpsearch.methods.structured.width import width_prune

        ratio = sparsity if pruning_ratio is None else pruning_ratio
        return width_prune(evaluator, importance, ratio, model=lm.model, **options)
    return run


def _slimgpt(evaluator, lm, sparsity, pruning_ratio=None, **options):
    from gpsearch.methods.structured.slimgpt import slimgpt

    return slimgpt(lm, evaluator.calib, sparsity if pruning_ratio is None else pruning_ratio,
                   **options)


def _tiers(evaluator, sparsity, pattern, schedule=None, metric="wanda", block_size=16, topk=10,
           **ft_options):
    from gpsearch.errors import UserError
    from gpsearch.methods.finetune import FinetuneConfig, Finetuner
    from gpsearch.methods.tiers import run_tiers
    from gpsearch.methods.tiers_schedule import load_schedule
    from gpsearch.tree import load_tree

    steps = load_schedule(schedule or EXAMPLE_SCHEDULE)
    reach = [i for i, s in enumerate(steps) if s.sparsity(block_size, topk) >= sparsity - 0.02]
    if not reach:
        raise UserError(
            f"the tiers schedule reaches only {steps[-1].sparsity(block_size, topk):.3f}")
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
    from gpsearch.jobs.compare.method import Method

    def fn(evaluator, sparsity, pattern, **options):
        from gpsearch.methods.lora import LoraSettings, lora_recover

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

    from gpsearch.methods.lora import LoraSettings

    knobs = (None if base.knobs is None else
             base.knobs | {f"lora_{n}" for n in _fields(LoraSettings)})
    return Method(f"{base.name}+lora", fn, f"{base.help}; then LoRA recovery (zeros kept)",
                  base.kinds, base.prepare, both, base.tree, knobs)


def _need_g(evaluator):
    evaluator.features.get("G")


def register_methods(register) -> None:
    """Add this module's methods with ``compare.register(name, fn, help, kinds, prepare,
    cleanup, knobs)``."""
    from gpsearch.methods.finetune import FinetuneConfig
    from gpsearch.methods.iterative import IterativeConfig
    from gpsearch.methods.structured.slimgpt import slimgpt
    from gpsearch.methods.structured.width import width_prune

    un = ("unstructured",)
    width_knobs = knob_names(width_prune) | {"pruning_ratio"}
    register("iterative", _iterative, "prune a fraction of the remaining weights + masked "
             "fine-tuning, repeated up to the sparsity (seed 000)", un, None, cleanup,
             _fields(IterativeConfig, _ITERATIVE_FIXED))
    register("tiers", _tiers,
             "progressive three-tier blocks (dense/2:4/top-k) + masked fine-tuning",
             un, None, cleanup, knob_names(_tiers) | _fields(FinetuneConfig))
    register("shortgpt", _structured(_shortgpt), "remove the lowest Block Influence layers", un,
             None, cleanup, knob_names(_shortgpt))
    register("width-taylor", _structured(_width("taylor")), "attention groups + MLP channels, "
             "Taylor |W|*G importance, global ranking", un, _need_g, cleanup, width_knobs)
    register("width-wanda", _structured(_width("wanda")), "attention groups + MLP channels, "
             "Wanda |W|*sqrt(X) importance, global ranking", un, None, cleanup, width_knobs)
    register("slimgpt", _structured(_slimgpt), "structured OBS on o_proj/down_proj inputs", un,
             None, cleanup, knob_names(slimgpt) | {"pruning_ratio"})
