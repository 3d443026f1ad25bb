"""The Python API: ``gpsearch.prune``, ``gpsearch.search``, ``gpsearch.compare`` with typed
configs. The commands (``gpsearch prune / search / compare``) are argparse layers over these
functions, and their defaults are these dataclasses' defaults (``search_run.DEFAULTS`` for the
search), so the CLI and Python cannot drift apart (tests/test_api.py checks it).

    import gpsearch
    rec = gpsearch.prune(gpsearch.PruneConfig(tree="wanda", sparsity=0.5, pattern="2:4"))
    res = gpsearch.compare(gpsearch.CompareConfig(methods=["wanda", "baselines/sparsegpt.yaml"]))
    run = gpsearch.search(gpsearch.SearchSettings(generations=5), out="runs/s5")
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from . import __version__
from .compare import CompareConfig
from .config import CalibConfig, EvalConfig
from .errors import UserError
from .models import EMBEDDED
from .robustness import RobustnessConfig
from .search_run import DEFAULTS as SEARCH_DEFAULTS

__all__ = ["PruneConfig", "SearchSettings", "CompareConfig", "RobustnessConfig", "prune", "search",
           "compare", "robustness"]


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
    owl_m: float = 5.0  # OWL: outlier threshold, a multiple of the block's mean score
    owl_lambda: float = 0.08  # OWL: block sparsities within target +- lambda


def _fields_of(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


@dataclass
class SearchSettings:
    """The search's settings; every default is ``search_run.DEFAULTS``'s (one visible place)."""

    model: str = SEARCH_DEFAULTS["model"]
    dtype: str = SEARCH_DEFAULTS["dtype"]
    device: str = SEARCH_DEFAULTS["device"]
    cache_dir: str | None = SEARCH_DEFAULTS["cache_dir"]
    data: str = SEARCH_DEFAULTS["data"]
    nsamples: int = SEARCH_DEFAULTS["nsamples"]
    seqlen: int = SEARCH_DEFAULTS["seqlen"]
    calib_seed: int = SEARCH_DEFAULTS["calib_seed"]
    batch_size: int = SEARCH_DEFAULTS["batch_size"]
    max_windows: int = SEARCH_DEFAULTS["max_windows"]
    test_windows: int = SEARCH_DEFAULTS["test_windows"]
    space: str = SEARCH_DEFAULTS["space"]
    population: int = SEARCH_DEFAULTS["population"]
    offspring: int = SEARCH_DEFAULTS["offspring"]
    elite: int = SEARCH_DEFAULTS["elite"]
    tournament: int = SEARCH_DEFAULTS["tournament"]
    p_crossover: float = SEARCH_DEFAULTS["p_crossover"]
    p_mutation: float = SEARCH_DEFAULTS["p_mutation"]
    generations: int = SEARCH_DEFAULTS["generations"]
    sparsity: float = SEARCH_DEFAULTS["sparsity"]
    pattern: str = SEARCH_DEFAULTS["pattern"]
    scope: str = SEARCH_DEFAULTS["scope"]
    seed: int = SEARCH_DEFAULTS["seed"]
    seed_trees: list = field(default_factory=lambda: list(SEARCH_DEFAULTS["seed_trees"]))
    workers: int = SEARCH_DEFAULTS["workers"]
    ray_address: str | None = SEARCH_DEFAULTS["ray_address"]
    eval_timeout: float | None = SEARCH_DEFAULTS["eval_timeout"]
    report: str = SEARCH_DEFAULTS["report"]
    fitness: str = SEARCH_DEFAULTS["fitness"]  # kl or ppl
    stages: str = SEARCH_DEFAULTS["stages"]  # TOKENS:FRACTION,... or none
    topk: int = SEARCH_DEFAULTS["topk"]
    immigrants: int = SEARCH_DEFAULTS["immigrants"]
    tune: int = SEARCH_DEFAULTS["tune"]
    report_update: int = SEARCH_DEFAULTS["report_update"]
    device_map: str | None = SEARCH_DEFAULTS["device_map"]
    gpus_per_worker: int = SEARCH_DEFAULTS["gpus_per_worker"]
    fitness_models: str = SEARCH_DEFAULTS["fitness_models"]  # "A,B": multi-model fitness
    fitness_rescale: str = SEARCH_DEFAULTS["fitness_rescale"]  # "G=4,X=0.25": rescaled terminals
    fitness_seeds: str = SEARCH_DEFAULTS["fitness_seeds"]  # "1,2": other calibration seeds
    fitness_nsamples: str = SEARCH_DEFAULTS["fitness_nsamples"]  # "32": other calibration sizes
    fitness_reduce: str = SEARCH_DEFAULTS["fitness_reduce"]  # mean or max over the conditions
    transfer_model: str | None = SEARCH_DEFAULTS["transfer_model"]  # also in the final report
    robustness: int = SEARCH_DEFAULTS["robustness"]  # summary: robustness of the best N trees
    allocation: str | None = SEARCH_DEFAULTS["allocation"]  # uniform, owl or FILE.json
    owl_m: float = SEARCH_DEFAULTS["owl_m"]  # OWL outlier threshold
    owl_lambda: float = SEARCH_DEFAULTS["owl_lambda"]  # OWL: sparsities within target +- lambda
    final_trees: int = SEARCH_DEFAULTS["final_trees"]  # the best N re-scored on final_windows
    final_windows: int = SEARCH_DEFAULTS["final_windows"]
    pick_conditions: str = SEARCH_DEFAULTS["pick_conditions"]  # robust pick: "" = off
    pick_reduce: str = SEARCH_DEFAULTS["pick_reduce"]  # max (worst condition) or mean

    def changed(self) -> dict:
        """The settings that differ from the defaults (what a resumed run may be given)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v != SEARCH_DEFAULTS.get(k)}


def search(settings: SearchSettings | dict | None = None, out: str | None = None,
           resume: str | None = None, **overrides) -> dict:
    """Run (or, with ``resume``, continue) a search; returns {"run_dir", "best", "rows",
    "summary"}. ``overrides``: settings by name, e.g. ``search(generations=5)``."""
    from .search_run import run_search

    if isinstance(settings, dict):
        settings = SearchSettings(**settings)
    bad = set(overrides) - set(_fields_of(SearchSettings))
    if bad:
        raise UserError(f"unknown search settings: {', '.join(sorted(bad))}")
    settings = dataclasses.replace(settings or SearchSettings(), **overrides)
    # a resumed run keeps its configuration: pass only what was changed from the defaults
    given = settings.changed() if resume else dataclasses.asdict(settings)
    return run_search(given, out=out, resume=resume)


def prune(config: PruneConfig | None = None, evaluator=None, keep: bool = False,
          log: Callable[[str], None] = print, **overrides) -> dict:
    """Prune with one metric tree and measure; returns the full record (config, perplexity,
    achieved sparsity, zero-shot accuracy, saved files). ``evaluator``: reuse a resident model
    (its calibration is used); ``keep``: leave the evaluator's model pruned."""
    from .export import check_save_format
    from .masks import check_sparsity, parse_pattern
    from .save import check_save_dir
    from .tree import load_tree, to_prefix
    from .zeroshot import check_tasks, evaluate_zero_shot, fmt_acc, parse_tasks

    cfg = dataclasses.replace(config or PruneConfig(), **overrides)
    sparsity = check_sparsity(cfg.sparsity)
    pattern = parse_pattern(cfg.pattern, sparsity, cfg.scope)
    if cfg.features not in ("dense", "sequential"):
        raise UserError(f"unknown feature mode {cfg.features!r}; choose dense or sequential")
    tree = load_tree(cfg.tree)
    from .allocation_run import allocate, parse_spec

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
        from .evaluator import Evaluator

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
        from .compare_update import evaluate_with_update

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
        from .export import save_compressed

        info = save_compressed(evaluator.lm, cfg.save, rec)
    else:
        from .export import weights_bytes
        from .save import save_pruned

        save_pruned(evaluator.lm, cfg.save, rec)
        info = {"save_format": "hf", "weights_bytes": weights_bytes(cfg.save)}
    return {"path": str(cfg.save), **info}


def _config_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d["calib"], d["evaluation"] = cfg.calib.to_dict(), cfg.evaluation.to_dict()
    return d


def compare(config: CompareConfig | None = None, evaluator=None, progress: bool = True,
            **overrides) -> dict:
    """Compare methods (names, metric trees, baselines/*.yaml recipes) under one calibration
    config on the TEST split; writes results.{md,csv,json} to ``config.out``; returns the result
    (``rows``: one per run, dense first)."""
    from .compare import plan, run_compare

    cfg = dataclasses.replace(config or CompareConfig(), **overrides)
    plan(cfg)  # every input error before any model is loaded
    return run_compare(cfg, evaluator=evaluator, progress=progress)


def robustness(config: RobustnessConfig | None = None, evaluator=None, progress: bool = True,
               **overrides) -> dict:
    """A tree's perplexity and advantage over a reference tree under rescaled terminals, other
    calibrations, patterns and sparsities (``gpsearch robustness``); writes ``config.out``."""
    from .robustness import run_robustness

    cfg = dataclasses.replace(config or RobustnessConfig(), **overrides)
    return run_robustness(cfg, evaluator=evaluator, progress=progress)
