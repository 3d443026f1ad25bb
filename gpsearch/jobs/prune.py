"""``gpsearch prune``: one metric tree at one sparsity and pattern (optionally under a layer-wise
allocation and with a weight update), measured on the test split, optionally saved."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M
from gpsearch.config import VERSION as __version__
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.model.load import EMBEDDED


@dataclass
class PruneConfig:
    """One pruning run: a metric tree at a sparsity and pattern, scored on ``evaluation``."""

    tree: str = "wanda"  # trees/NAME.json, a bare name in trees/, or a prefix expression
    sparsity: float = 0.5  # fraction of weights set to zero
    pattern: str = "unstructured"  # unstructured, 2:4, 4:8 (N:M)
    scope: str = "row"  # unstructured comparison group: row (Wanda) or matrix
    features: str = "dense"  # dense (statistics once) or sequential (block by block)
    model: str = EMBEDDED
    calib: CalibConfig = field(default_factory=CalibConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)  # the TEST split by default
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None
    dense_ppl: bool = False  # also measure the dense model
    per_layer: bool = False  # record each linear's sparsity
    save: str | None = None  # write the pruned model to this directory
    save_format: str = "hf"  # hf (dense from_pretrained directory) or compressed-tensors
    zero_shot: list = field(default_factory=list)  # lm-eval task names, e.g. ["wiki_lastword"]
    zero_shot_limit: int | None = None  # at most this many examples per task
    update: str = "none"  # weight update: none, recon (least squares after the mask), sparsegpt
    recon_max_iter: int = 20  # update recon: conjugate-gradient iterations per linear
    device_map: str | None = None  # accelerate placement over several GPUs (auto, balanced)
    offload: bool = False  # blocks in host memory, moved to the device one at a time
    allocation: str | None = None  # layer-wise sparsity: uniform, owl or an allocation FILE.json
    owl_m: float = DEFAULT_OWL_M  # OWL: outlier threshold, a multiple of the block's mean score
    owl_lambda: float = DEFAULT_OWL_LAMBDA  # OWL: block sparsities within target +- lambda


def run_prune(cfg: PruneConfig, evaluator=None, keep: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Prune with one metric tree and measure; returns the full record (config, perplexity,
    achieved sparsity, zero-shot accuracy, saved files). ``evaluator``: reuse a resident model
    (its calibration is used); ``keep``: leave the evaluator's model pruned."""
    from gpsearch.fitness.zeroshot import check_tasks, evaluate_zero_shot, fmt_acc, parse_tasks
    from gpsearch.model.export import check_save_format
    from gpsearch.model.save import check_save_dir
    from gpsearch.pruning.masks import check_sparsity, parse_pattern
    from gpsearch.tree import load_tree, to_prefix

    sparsity = check_sparsity(cfg.sparsity)
    pattern = parse_pattern(cfg.pattern, sparsity, cfg.scope)
    if cfg.features not in ("dense", "sequential"):
        raise UserError(f"unknown feature mode {cfg.features!r}; choose dense or sequential")
    tree = load_tree(cfg.tree)
    from gpsearch.allocation.apply import allocate, parse_spec

    alloc_spec = parse_spec(cfg.allocation, cfg.owl_m, cfg.owl_lambda)
    if cfg.update not in ("none", "recon", "sparsegpt"):
        raise UserError(f"unknown weight update {cfg.update!r}; choose none, recon or sparsegpt")
    if cfg.recon_max_iter < 1:
        raise UserError(f"--recon-max-iter must be >= 1, got {cfg.recon_max_iter}")
    check_save_dir(cfg.save)
    check_save_format(cfg.save_format)
    tasks = parse_tasks(cfg.zero_shot)
    check_tasks(tasks)  # unknown task / unreachable hub: before any model is loaded
    log(f"tree: {to_prefix(tree)}")
    log(f"model: {cfg.model}  sparsity: {sparsity:g} (fraction zeroed)  pattern: {pattern}  "
        f"scope: {pattern.scope}  features: {cfg.features}  update: {cfg.update}")
    t0 = time.perf_counter()
    if evaluator is None:
        from gpsearch.pruning.evaluator import Evaluator

        evaluator = Evaluator(cfg.model, cfg.calib, cfg.dtype, cfg.device, cfg.cache_dir,
                              progress=True, device_map=cfg.device_map, offload=cfg.offload)
    log(f"calibration: {evaluator.calib.to_dict()}")
    ev = cfg.evaluation
    sparsity = allocate(evaluator, alloc_spec, sparsity, pattern, tree)
    if alloc_spec is not None:
        log(f"allocation {alloc_spec.kind}: block sparsities "
            f"{' '.join(f'{b:.3f}' for b in sparsity.allocation.blocks)}")
    dense = evaluator.perplexity(ev) if cfg.dense_ppl else None
    hold = bool(cfg.save or tasks or keep)
    if cfg.update == "none":
        rec = evaluator.evaluate(tree, sparsity, pattern, ev, cfg.features,
                                 per_layer=cfg.per_layer, keep=hold)
    else:
        from gpsearch.jobs.compare.update import evaluate_with_update

        rec = evaluate_with_update(evaluator, tree, sparsity, pattern, ev, cfg.features,
                                   cfg.update, cfg.per_layer, hold,
                                   {"max_iter": cfg.recon_max_iter})
    try:
        rec.update(gpsearch_version=__version__, command="prune", config=_config_dict(cfg),
                   created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if dense:
            rec["dense_ppl"] = dense["ppl"]
        if tasks:
            rec["zero_shot"] = evaluate_zero_shot(evaluator.model, evaluator.lm.tokenizer, tasks,
                                                  cfg.zero_shot_limit, ev.batch_size)
            for t, r in rec["zero_shot"].items():
                log(f"zero-shot {t}: acc {fmt_acc(r)} ({r['n']} examples)")
        rec["wall_s"] = time.perf_counter() - t0
        if cfg.save:
            rec["saved"] = _save(evaluator, cfg, rec)
    finally:
        if hold and not keep:
            evaluator.restore()
    return rec


def _save(evaluator, cfg: PruneConfig, rec: dict) -> dict:
    if cfg.save_format == "compressed-tensors":
        from gpsearch.model.export import save_compressed

        info = save_compressed(evaluator.lm, cfg.save, rec)
    else:
        from gpsearch.model.export import weights_bytes
        from gpsearch.model.save import save_pruned

        save_pruned(evaluator.lm, cfg.save, rec)
        info = {"save_format": "hf", "weights_bytes": weights_bytes(cfg.save)}
    return {"path": str(cfg.save), **info}


def _config_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d["calib"], d["evaluation"] = cfg.calib.to_dict(), cfg.evaluation.to_dict()
    return d


