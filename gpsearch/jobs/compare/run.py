"""Compare pruning methods on one evaluator: same model, same calibration config, TEST split.

Methods come from a registry (``METHODS``: name -> ``Method``) that other modules extend with
``register(...)``; any other name is read as a metric tree spec (a .json path, a name in trees/,
or a prefix expression) and applied with ``evaluator.prune`` (block-sequential by default). Every
(method, pattern, sparsity) is one row; a method that raises becomes a row with its error and the
others still run. Input is validated before any work (``plan``). Reports: ``compare_report``.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.io import ROOT, code_version, relative_path
from gpsearch.jobs.compare.allocation import alloc_label, alloc_specs, owl_tree, plot_allocations
from gpsearch.jobs.compare.method import Method, parse_sparsities, split_list
from gpsearch.jobs.compare.registry import resolve_method, resolve_specs
from gpsearch.jobs.compare.update import weight_update_methods
from gpsearch.model.load import EMBEDDED
from gpsearch.pruning.masks import Pattern, parse_pattern


@dataclass
class CompareConfig:
    """One comparison: every method runs under ``calib`` and is scored on ``evaluation``."""

    methods: list[str] = field(default_factory=lambda: ["magnitude", "wanda", "sparsegpt"])
    patterns: list[str] = field(default_factory=lambda: ["unstructured"])
    sparsities: list[float] = field(default_factory=lambda: [0.5])
    out: str = "runs/compare"
    model: str = EMBEDDED
    calib: CalibConfig = field(default_factory=CalibConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None
    tree_features: str = "sequential"
    options: dict = field(default_factory=dict)  # method name -> {knob: value}
    include: list = field(default_factory=list)  # earlier results.json files to add as rows
    allow_mixed: bool = False  # accept included rows measured under another configuration
    zero_shot: list = field(default_factory=list)  # lm-eval tasks, e.g. ["wiki_lastword"]
    zero_shot_limit: int | None = None  # at most this many examples per task
    device_map: str | None = None  # accelerate placement over several GPUs (auto, balanced)
    offload: bool = False  # blocks in host memory, moved to the device one at a time
    allocations: list = field(default_factory=list)  # uniform, owl, FILE.json (empty: plain)
    owl_m: float = DEFAULT_OWL_M  # OWL outlier threshold (a multiple of the block's mean score)
    owl_lambda: float = DEFAULT_OWL_LAMBDA  # OWL: block sparsities within target +- lambda

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["calib"], d["evaluation"] = self.calib.to_dict(), self.evaluation.to_dict()
        return d

    def record(self) -> dict:
        """``to_dict`` for results.json: its paths relative to the repository when inside it."""
        d = self.to_dict()
        d["out"] = relative_path(self.out)
        if self.cache_dir:
            d["cache_dir"] = relative_path(self.cache_dir)
        if isinstance(self.include, list):
            d["include"] = [relative_path(p) for p in self.include]
        if isinstance(self.allocations, list):
            d["allocations"] = [relative_path(a) if str(a).strip().endswith(".json") else a
                                for a in self.allocations]
        return d


def plan(cfg: CompareConfig) -> tuple[list[Method], list[tuple[Method, Pattern, float]], list[str]]:
    """Validate everything (one-line UserError) and list the runs; no model is touched."""
    if cfg.evaluation.split != "test":
        raise UserError("compare reports on the test split")
    if cfg.tree_features not in ("sequential", "dense"):
        raise UserError(f"unknown tree feature mode {cfg.tree_features!r}")
    sparsities = parse_sparsities(cfg.sparsities)
    patterns = [parse_pattern(p) for p in split_list(cfg.patterns, "pattern")]
    methods = [m for spec in split_list(cfg.methods, "method")
               for m in resolve_specs(spec, cfg.tree_features)]
    names = [m.name for m in methods]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"two methods named {', '.join(twice)} (a recipe's name is its file stem)")
    unknown = set(cfg.options) - set(names)
    if unknown:
        raise UserError(f"options given for methods not compared: {', '.join(sorted(unknown))}")
    for m in methods:
        bad = set(cfg.options.get(m.name, {})) - (m.knobs if m.knobs is not None else set())
        if m.knobs is not None and bad:
            raise UserError(f"unknown option(s) {', '.join(sorted(bad))} for {m.name} (its "
                            f"knobs: {', '.join(sorted(m.knobs)) or 'none'})")
    from gpsearch.fitness.zeroshot import parse_tasks

    parse_tasks(cfg.zero_shot)
    alloc_specs(cfg, methods)
    grid = sorted(set(sparsities).union(*(m.sparsities for m in methods)))
    runs, notes = [], []
    for pattern in patterns:
        for s in grid:
            if pattern.kind == "nm" and abs(s - pattern.n / pattern.m) > 1e-9:
                if s in sparsities:
                    notes.append(f"{pattern} skipped at sparsity {s:g} ({pattern} means "
                                 f"{pattern.n / pattern.m:g})")
                continue
            for m in methods:
                if s not in (m.sparsities or sparsities):
                    continue
                if pattern.kind not in m.kinds:
                    notes.append(f"{m.name} skipped for {pattern} (supports {', '.join(m.kinds)})")
                else:
                    runs.append((m, pattern, s))
    if not runs:
        raise UserError("nothing to run: " + "; ".join(notes))
    notes += _included(cfg)[1]
    return methods, runs, notes


def _included(cfg: CompareConfig) -> tuple[list[dict], list[str]]:
    from gpsearch.jobs.compare.include import load_included

    ev = cfg.evaluation.to_dict()
    return load_included(cfg.include, cfg.model, cfg.calib.to_dict(), ev, cfg.allow_mixed)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def run_one(evaluator, method: Method, pattern: Pattern, sparsity: float, ev: EvalConfig,
            options: dict, base: dict, zero_shot=None, allocation=None) -> dict:
    """Prune with one method, measure, restore; errors become part of the row.
    ``zero_shot(model, tokenizer) -> {task: accuracy record}`` runs on the pruned model.
    ``allocation``: an ``AllocationSpec`` (layer-wise sparsities), None for uniform ratios."""
    options = {**method.defaults, **options}
    row = {**base, "method": method.name + alloc_label(allocation), "pattern": str(pattern),
           "sparsity": float(sparsity),
           "ppl": None, "achieved_sparsity": None, "prune_s": None, "features_s": None,
           "error": None, "options": options, "tree": method.tree, "recipe": method.recipe}
    try:
        t0 = time.perf_counter()
        if method.prepare:
            method.prepare(evaluator)
        if allocation is not None:
            from gpsearch.allocation.apply import allocate

            sparsity = allocate(evaluator, allocation, float(sparsity), pattern, owl_tree(method))
            row["allocation"] = sparsity.allocation.to_dict()
        t1 = time.perf_counter()
        info = method.fn(evaluator, sparsity, pattern, **options) or {}
        row["prune_s"], row["features_s"] = time.perf_counter() - t1, t1 - t0
        if allocation is not None:
            from gpsearch.allocation.levels import per_block

            row["block_sparsity"] = per_block(evaluator.layer_counts())
        counts = evaluator.layer_counts().values()
        row["achieved_sparsity"] = info.get("achieved_sparsity",  # structured: weights removed
                                            sum(z for z, _ in counts) / sum(n for _, n in counts))
        row["info"] = {k: v for k, v in info.items() if k != "calibration"}
        row["ppl"] = evaluator.perplexity(ev)["ppl"]
        if zero_shot is not None:
            row["zero_shot"] = zero_shot(evaluator.model, evaluator.lm.tokenizer)
    except Exception as e:  # noqa: BLE001 - one failing method must not stop the comparison
        row["error"] = _first_line(e)
        row["traceback"] = traceback.format_exc(limit=8).replace(f"{ROOT}{os.sep}", "")
    finally:
        evaluator.restore()
        if method.cleanup:
            method.cleanup(evaluator)
    return row


def run_compare(cfg: CompareConfig, evaluator=None, progress: bool = True,
                log: Callable[[str], None] = tqdm.write) -> dict:
    """Run the comparison and write results.{md,csv,json} (+ a PNG for several sparsities)."""
    from gpsearch.fitness.zeroshot import check_tasks, evaluate_zero_shot, fmt_acc, parse_tasks
    from gpsearch.jobs.compare.report import write_reports

    methods, runs, notes = plan(cfg)
    tasks = parse_tasks(cfg.zero_shot)
    check_tasks(tasks)  # unknown task / hub unreachable: before anything is written or loaded
    zero_shot = None
    if tasks:
        def zero_shot(model, tokenizer):
            return evaluate_zero_shot(model, tokenizer, tasks, cfg.zero_shot_limit,
                                      cfg.evaluation.batch_size)
    specs = alloc_specs(cfg, methods)
    out = Path(cfg.out)
    if evaluator is None:
        from gpsearch.pruning.evaluator import Evaluator

        evaluator = Evaluator(cfg.model, cfg.calib, cfg.dtype, cfg.device, cfg.cache_dir,
                              progress=progress, device_map=cfg.device_map, offload=cfg.offload)
    if any(s is not None and s.kind == "file" for s in specs):  # block count / total: now
        from gpsearch.allocation.file import read_allocation
        from gpsearch.allocation.levels import check_allocation

        for s in specs:
            if s is not None and s.kind == "file":
                check_allocation(read_allocation(s.path), evaluator.shapes())
    out.mkdir(parents=True, exist_ok=True)
    ev = cfg.evaluation
    for n in notes:
        log(f"note: {n}")
    log(f"calibration (every method): {cfg.calib.to_dict()}")
    log(f"evaluation: {ev.data} {ev.split} split, seqlen {ev.seqlen}, max windows {ev.max_windows}")
    t = time.perf_counter()
    dense = evaluator.perplexity(ev)
    evaluation = {**ev.to_dict(), "windows": dense["windows"], "tokens": dense["tokens"]}
    base = {"model": cfg.model, "calibration": cfg.calib.to_dict(), "evaluation": evaluation}
    rows = [{**base, "method": "dense", "pattern": "-", "sparsity": 0.0, "ppl": dense["ppl"],
             "achieved_sparsity": 0.0, "prune_s": 0.0, "features_s": 0.0, "error": None,
             "options": {}, "tree": None, "forward_s": time.perf_counter() - t}]
    if zero_shot is not None:
        rows[0]["zero_shot"] = zero_shot(evaluator.model, evaluator.lm.tokenizer)
    result = {"config": cfg.record(), "notes": notes, "rows": rows,
              "pruned_modules": evaluator.pruned_modules(), **code_version(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    log(f"dense PPL {dense['ppl']:.3f}" + "".join(
        f" | {t} {fmt_acc(r)}" for t, r in rows[0].get("zero_shot", {}).items()))
    rows += _included(cfg)[0]
    bar = tqdm([(*r, a) for r in runs for a in specs], desc="compare", disable=not progress)
    for method, pattern, s, spec in bar:
        bar.set_postfix_str(f"{method.name}{alloc_label(spec)} {pattern} {s:g}")
        row = run_one(evaluator, method, pattern, s, ev, cfg.options.get(method.name, {}), base,
                      zero_shot, spec)
        rows.append(row)
        msg = f"PPL {row['ppl']:.3f}" if row["error"] is None else f"ERROR {row['error']}"
        msg += "".join(f" | {t} {fmt_acc(r)}" for t, r in row.get("zero_shot", {}).items())
        log(f"{method.name:>16} {str(pattern):>12} {s:<5g} {msg}")
        result["files"] = write_reports(result, out, final=False)
    png = plot_allocations(rows, out)
    result["files"] = write_reports(result, out, final=True)
    if png:
        result["files"]["allocation_png"] = str(png)
    return result


def weight_update_rows(evaluator, trees: list[str], sparsity: float, pattern, ev,
                       options: dict | None = None, features: str = "sequential") -> list[dict]:
    """Compare rows (as ``compare.run_one`` writes them, TEST split ``ev``) of every method of
    ``update.weight_update_methods(trees)`` on ``evaluator``; the model is restored after each row.
    ``options``: {method spec: {knob: value}} as in CompareConfig.options."""
    options = options or {}
    base = {"model": evaluator.lm.spec, "calibration": evaluator.calib.to_dict(),
            "evaluation": ev.to_dict()}
    rows = []
    for spec in weight_update_methods(trees):
        method = resolve_method(spec, features)
        rows.append(run_one(evaluator, method, pattern, sparsity, ev, options.get(spec, {}), base))
    return rows
