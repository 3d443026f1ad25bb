"""The Python API, re-exported by ``gpsearch/__init__.py``: one function per application, each
with a typed config whose defaults are the CLI's (``jobs.search.plan.DEFAULTS`` for the search),
so the CLI and Python cannot drift apart (tests/test_api.py checks it).

    import gpsearch
    rec = gpsearch.prune(gpsearch.PruneConfig(tree="wanda", sparsity=0.5, pattern="2:4"))
    res = gpsearch.compare(gpsearch.CompareConfig(methods=["wanda", "baselines/sparsegpt.yaml"]))
    run = gpsearch.search(gpsearch.SearchSettings(generations=5), out="runs/s5")
    alloc = gpsearch.allocate(gpsearch.AllocateSettings(sparsity=0.7), out="runs/a70")
    rob = gpsearch.robustness(gpsearch.RobustnessConfig(tree="trees/wanda.json"))
    fun = gpsearch.funnel(gpsearch.FunnelConfig(run_dir="runs/s5"))
    rec = gpsearch.structured(gpsearch.StructuredConfig(method="width", pruning_ratio=0.25))
    rec = gpsearch.tiers(gpsearch.TiersConfig(schedule="schedules/tiers_example.csv"))
    rec = gpsearch.lora(gpsearch.LoraConfig(model="runs/pruned", save="runs/merged"))
    state = gpsearch.iterative(gpsearch.IterativeConfig(target_sparsity=0.5), save_dir="runs/it")
    tree = gpsearch.load_tree("mul(W, sqrt(X))")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from gpsearch.errors import UserError
from gpsearch.fitness.zeroshot import evaluate_zero_shot
from gpsearch.jobs.allocate import AllocateSettings
from gpsearch.jobs.compare.run import CompareConfig
from gpsearch.jobs.funnel import FunnelConfig
from gpsearch.jobs.iterative import IterativeConfig
from gpsearch.jobs.lora import LoraConfig
from gpsearch.jobs.prune import PruneConfig
from gpsearch.jobs.robustness import RobustnessConfig
from gpsearch.jobs.search.plan import DEFAULTS as SEARCH_DEFAULTS
from gpsearch.jobs.structured import StructuredConfig
from gpsearch.jobs.tiers import TiersConfig
from gpsearch.tree import load_tree

__all__ = ["PruneConfig", "SearchSettings", "CompareConfig", "RobustnessConfig",
           "AllocateSettings", "StructuredConfig", "TiersConfig", "LoraConfig",
           "IterativeConfig", "FunnelConfig", "prune", "search", "compare", "robustness",
           "allocate", "structured", "tiers", "lora", "iterative", "funnel", "load_tree",
           "evaluate_zero_shot"]


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
    init_population: int = SEARCH_DEFAULTS["init_population"]  # gen 0 trees (0: population)
    niches: int = SEARCH_DEFAULTS["niches"]  # survivor slots kept for unread input sets
    hurdle: float = SEARCH_DEFAULTS["hurdle"]  # proxy ratio to Wanda's tree's (0: off)
    refill: int = SEARCH_DEFAULTS["refill"]  # extra rounds of children while too few evaluated
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
    lead_noise: int = SEARCH_DEFAULTS["lead_noise"]  # summary: lead vs calibration-seed noise
    allocation: str | None = SEARCH_DEFAULTS["allocation"]  # uniform, owl or FILE.json
    owl_m: float = SEARCH_DEFAULTS["owl_m"]  # OWL outlier threshold
    owl_lambda: float = SEARCH_DEFAULTS["owl_lambda"]  # OWL: sparsities within target +- lambda
    final_trees: int = SEARCH_DEFAULTS["final_trees"]  # the best N re-scored on final_windows
    final_windows: int = SEARCH_DEFAULTS["final_windows"]
    pick_conditions: str = SEARCH_DEFAULTS["pick_conditions"]  # robust pick: "" = off
    pick_reduce: str = SEARCH_DEFAULTS["pick_reduce"]  # max (worst condition) or mean
    funnel: str = SEARCH_DEFAULTS["funnel"]  # auto, NAME or "" (off)

    def changed(self) -> dict:
        """The settings that differ from the defaults (what a resumed run may be given)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v != SEARCH_DEFAULTS.get(k)}


def search(settings: SearchSettings | dict | None = None, out: str | None = None,
           resume: str | None = None, **overrides) -> dict:
    """Run (or, with ``resume``, continue) a search; returns {"run_dir", "best", "rows",
    "summary"}. ``overrides``: settings by name, e.g. ``search(generations=5)``."""
    from gpsearch.jobs.search.run import run_search

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
    from gpsearch.jobs.prune import run_prune

    return run_prune(dataclasses.replace(config or PruneConfig(), **overrides), evaluator, keep,
                     log)


def compare(config: CompareConfig | None = None, evaluator=None, progress: bool = True,
            **overrides) -> dict:
    """Compare methods (names, metric trees, baselines/*.yaml recipes) under one calibration
    config on the TEST split; writes results.{md,csv,json} to ``config.out``; returns the result
    (``rows``: one per run, dense first)."""
    from gpsearch.jobs.compare.run import plan, run_compare

    cfg = dataclasses.replace(config or CompareConfig(), **overrides)
    plan(cfg)  # every input error before any model is loaded
    return run_compare(cfg, evaluator=evaluator, progress=progress)


def robustness(config: RobustnessConfig | None = None, evaluator=None, progress: bool = True,
               **overrides) -> dict:
    """A tree's perplexity and advantage over a reference tree under rescaled terminals, other
    calibrations, patterns and sparsities (``gpsearch robustness``); writes ``config.out``."""
    from gpsearch.jobs.robustness import run_robustness

    cfg = dataclasses.replace(config or RobustnessConfig(), **overrides)
    return run_robustness(cfg, evaluator=evaluator, progress=progress)


def funnel(config: FunnelConfig | None = None, evaluator=None, progress: bool = True,
           **overrides) -> dict:
    """The funnel over a finished search run directory (``gpsearch funnel RUN_DIR``): its top
    trees, best seeds and the hand trees re-scored on the validation split under the conditions
    of a funnel file; a searched tree is reported only if it leads its seed and the strongest
    hand tree beyond each condition's noise under a majority of them. Writes funnel.json,
    funnel.md and funnel_conditions.json into the run directory; returns the record
    (``reported``, ``verdict``, ``finalists``, ``selection``). ``evaluator``: a resident model
    with the run's calibration (else the run's model is loaded)."""
    from gpsearch.jobs.funnel import run_funnel

    cfg = dataclasses.replace(config or FunnelConfig(), **overrides)
    return run_funnel(cfg, evaluator=evaluator, progress=progress)


def allocate(settings: AllocateSettings | None = None, out: str | None = None,
             resume: str | None = None, **overrides) -> dict:
    """Search a layer-wise sparsity allocation for a fixed metric tree (``gpsearch allocate``):
    a resumable run directory with ``best_allocation.json``; returns the run's result (test PPL
    rows of uniform and searched allocations, the chosen tree)."""
    from gpsearch.jobs.allocate import run_allocate

    return run_allocate(dataclasses.replace(settings or AllocateSettings(), **overrides),
                        out=out, resume=resume)


def structured(config: StructuredConfig | None = None, log: Callable[[str], None] = print,
               progress: bool = True, **overrides) -> dict:
    """Structured pruning (``gpsearch structured``): ShortGPT layer removal, width pruning of
    attention groups and MLP channels, or SlimGPT, then optional LoRA recovery; the model becomes
    physically smaller. Writes ``config.record`` and saves ``config.save``; returns the record
    (parameters before/after, dense and pruned TEST-split perplexity)."""
    from gpsearch.jobs.structured import run_structured

    return run_structured(dataclasses.replace(config or StructuredConfig(), **overrides), log,
                          progress)


def tiers(config: TiersConfig | None = None, log: Callable[[str], None] = print,
          progress: bool = True, **overrides) -> dict:
    """Progressive three-tier block pruning (``gpsearch tiers``): DENSE / 2:4 / TOPK blocks
    following ``config.schedule``, masked fine-tuning between iterations, a resumable run
    directory (``config.save`` / ``config.resume``); returns the run record (per-iteration
    shares, sparsity and perplexity)."""
    from gpsearch.jobs.tiers import run_tiers

    return run_tiers(dataclasses.replace(config or TiersConfig(), **overrides), log, progress)


def lora(config: LoraConfig | None = None, log: Callable[[str], None] = print,
         progress: bool = True, **overrides) -> dict:
    """LoRA recovery fine-tuning of a pruned model (``gpsearch lora``): the merge keeps every
    zero. Writes ``config.record`` and saves ``config.save``; returns the record (TEST-split
    perplexity before, with the adapters and merged; sparsity before and after)."""
    from gpsearch.jobs.lora import run_lora

    return run_lora(dataclasses.replace(config or LoraConfig(), **overrides), log, progress)


def iterative(config: IterativeConfig | dict | None = None, save_dir: str | None = None,
              resume: str | None = None, evaluator=None, progress: bool = True,
              log: Callable[[str], None] = print, max_rounds: int | None = None) -> dict:
    """Iterative pruning with masked fine-tuning (``gpsearch iterative``): a new run into
    ``save_dir`` (default runs/iterative_<time>), or ``resume`` a run directory with its saved
    config; returns the run state (config, dense perplexity, per-round history, summary).
    ``evaluator``: a resident model; ``max_rounds``: stop after this many rounds (resume later)."""
    from gpsearch.jobs.iterative import run_iterative

    return run_iterative(config, save_dir=save_dir, resume=resume, evaluator=evaluator,
                         progress=progress, log=log, max_rounds=max_rounds)
