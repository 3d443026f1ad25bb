"""Iterative pruning with fine-tuning (seed 000; Han et al. 2015, Zhu & Gupta 2017).

Each round: score every prunable linear with a metric tree on its CURRENT weights (weights that
are already zero are forced to the lowest score, so they stay pruned), prune up to the round's
target sparsity, measure perplexity, fine-tune with the masks held, measure again.

Schedules (sparsity = fraction of weights set to zero):
- ``geometric``: each round prunes ``prune_fraction`` of the current non-zero weights, so after r
  rounds s_r = 1 - (1 - p)^r, capped at the target (0.9 at p = 0.1 takes 22 rounds);
- ``cubic`` (Zhu & Gupta): s_t = s_f * (1 - (1 - t / n)^3) for t = 1..n, n = ``max_iterations``.

A run directory holds ``run.json`` (config, dense perplexity, per-round history) and the weights
after the last finished round (``weights_NNN.safetensors``); ``resume`` continues it. The
optimizer is fresh every round and every round's randomness is seeded by (seed, round), so an
interrupted and resumed run gives the same history as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_model, save_model

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M, per_block, ratio_of
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.io import write_json
from gpsearch.methods.finetune import FinetuneConfig, Finetuner, zero_masks
from gpsearch.model.load import EMBEDDED
from gpsearch.pruning.features import collect_gradients, collect_input_stats
from gpsearch.pruning.masks import check_sparsity, make_mask, parse_pattern
from gpsearch.tree import EXTENDED, check_score, evaluate, load_tree, terminals_used, to_prefix

SCHEDULES = ("geometric", "cubic")


@dataclass(frozen=True)
class IterativeConfig:
    """Everything one iterative run depends on (recorded in run.json)."""

    model: str = EMBEDDED
    metric: str = "magnitude"
    target_sparsity: float = 0.9
    prune_fraction: float = 0.1
    schedule: str = "geometric"
    max_iterations: int = 25
    epochs_per_iteration: int = 3
    max_steps: int = 2500
    lr: float = 1e-5
    batch_size: int = 8
    seed: int = 42
    scope: str = "row"
    data: str = "wiki"
    nsamples: int = 128
    seqlen: int = 256
    calib_seed: int = 0
    calib_batch_size: int = 4
    eval_split: str = "test"
    max_windows: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    allocation: str | None = None  # layer-wise sparsity: uniform, owl or an allocation FILE.json
    owl_m: float = DEFAULT_OWL_M
    owl_lambda: float = DEFAULT_OWL_LAMBDA

    def __post_init__(self):
        check_sparsity(self.target_sparsity)
        if self.allocation is not None:
            from gpsearch.allocation.apply import parse_spec

            parse_spec(self.allocation, self.owl_m, self.owl_lambda)  # a bad file: one line
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose geometric or cubic")
        if not 0 < self.prune_fraction < 1:
            raise UserError(f"prune fraction must be in (0, 1), got {self.prune_fraction}")
        if self.max_iterations < 1:
            raise UserError("max iterations must be at least 1")
        parse_pattern("unstructured", scope=self.scope)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IterativeConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown iterative config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def calib(self) -> CalibConfig:
        return CalibConfig(self.data, self.nsamples, self.seqlen, self.calib_seed,
                           self.calib_batch_size)

    def evaluation(self) -> EvalConfig:
        return EvalConfig(self.data, self.eval_split, self.seqlen, self.max_windows,
                          self.calib_batch_size)

    def finetune(self) -> FinetuneConfig:
        return FinetuneConfig(self.lr, self.batch_size, self.epochs_per_iteration, self.max_steps,
                              self.seqlen, self.seed, data=self.data)


def schedule_targets(cfg: IterativeConfig) -> list[float]:
    """The sparsity to reach after each round (non-decreasing, ending at most at the target)."""
    s_f = cfg.target_sparsity
    if cfg.schedule == "cubic":
        n = cfg.max_iterations
        return [s_f * (1.0 - (1.0 - t / n) ** 3) for t in range(1, n + 1)]
    out = []
    for r in range(1, cfg.max_iterations + 1):
        out.append(min(s_f, 1.0 - (1.0 - cfg.prune_fraction) ** r))
        if out[-1] >= s_f - 1e-12:
            break
    return out


def current_scores(evaluator, tree, fresh: bool) -> dict[str, torch.Tensor]:
    """The tree's scores on the CURRENT weights; already-zero weights get -inf (lowest). With
    ``fresh``, X/S/H/G are recomputed on the current model, else the evaluator's dense ones."""
    needed = terminals_used(tree)
    local = grads = None
    samples = evaluator.features.samples()
    if fresh and needed & {"X", "S", "H"}:
        stats = collect_input_stats(evaluator.model, evaluator.linears, samples,
                                    evaluator.calib.batch_size, hessian="H" in needed)
        local = {"X": {n: s.x for n, s in stats.items()}}
        if "H" in needed:
            local["H"] = {n: s.inverse_hessian_diag() for n, s in stats.items()}
    if fresh and "G" in needed:
        grads = collect_gradients(evaluator.model, evaluator.linears, samples)
    out = {}
    for name, lin in evaluator.linears.items():
        terms = evaluator.terminals(name, needed - {"W", "G"}, local)
        w = lin.weight.detach()
        if "W" in needed:
            terms["W"] = w.abs().float()
        if "G" in needed:
            terms["G"] = grads[name] if grads is not None else evaluator.features.get("G")[name]
        score = check_score(evaluate(tree, terms, EXTENDED), w.shape).float()
        out[name] = score.masked_fill(w == 0, float("-inf"))
    return out


@torch.no_grad()
def prune_to(evaluator, scores: dict[str, torch.Tensor], sparsity: float, pattern) -> None:
    """``sparsity``: a float, or an ``allocation.Allocated`` (a ratio per linear)."""
    for name, lin in evaluator.linears.items():
        lin.weight.masked_fill_(make_mask(scores[name], ratio_of(sparsity, name), pattern), 0.0)


def run_allocation(evaluator, cfg: IterativeConfig, tree, pattern, state: dict):
    """The run's allocation at the final target (None: uniform rounds): decided once on the
    DENSE model (OWL reads the tree's dense scores) and kept in run.json, so a resumed run
    follows the same one."""
    from gpsearch.allocation.apply import allocate, parse_spec
    from gpsearch.allocation.file import allocation_json, parse_allocation

    if cfg.allocation is None:
        return None
    if "allocation" not in state:
        spec = parse_spec(cfg.allocation, cfg.owl_m, cfg.owl_lambda)
        alloc = allocate(evaluator, spec, cfg.target_sparsity, pattern, tree).allocation
        state["allocation"] = allocation_json(alloc)
    return parse_allocation(state["allocation"], "run.json allocation")


def round_sparsity(evaluator, alloc, target: float, scope: str):
    """A round's sparsity: ``target`` itself, or the allocation's profile scaled to it."""
    if alloc is None:
        return target
    from gpsearch.allocation.apply import scaled

    return scaled(alloc, evaluator.shapes(), target, scope)


def sparsity_of(evaluator) -> float:
    counts = evaluator.layer_counts().values()
    return sum(z for z, _ in counts) / sum(t for _, t in counts)


def _save(run_dir: Path, state: dict, model=None) -> None:
    """Weights first (a new file per round), then run.json naming them, then drop the old file.
    Without ``model`` only run.json is rewritten."""
    old = name = state.get("weights")
    if model is not None:
        name = f"weights_{len(state['history']):03d}.safetensors"
        save_model(model, str(run_dir / name))
    state["weights"] = name
    write_json(run_dir / "run.json", state)
    if old and old != name and (run_dir / old).exists():
        (run_dir / old).unlink()


def load_state(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise UserError(f"cannot resume: {path} not found")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"cannot resume: {path} is not valid JSON ({e})") from None


def run_iterative(config: IterativeConfig | dict | None = None, save_dir: str | Path | None = None,
                  resume: str | Path | None = None, evaluator=None, progress: bool = True,
                  log: Callable[[str], None] = print, max_rounds: int | None = None) -> dict:
    """Run (or resume) iterative pruning; returns the run state (config, dense PPL, history,
    summary). ``evaluator``: an Evaluator to use instead of loading ``config.model``;
    ``max_rounds``: stop after this many rounds in this call (resume later)."""
    state = load_state(resume) if resume else None
    if state:
        cfg = IterativeConfig.from_dict(state["config"])
        run_dir = Path(resume)
    else:
        cfg = (config if isinstance(config, IterativeConfig)
               else IterativeConfig.from_dict(config or {}))
        run_dir = Path(save_dir or f"runs/iterative_{time.strftime('%Y%m%d-%H%M%S')}")
        if (run_dir / "run.json").exists():
            raise UserError(f"{run_dir} already holds a run; use --resume {run_dir}")
    if state and state.get("finished") and "summary" in state:
        for line in [f"{run_dir} is finished"] + summary_lines(state):
            log(line)
        return state
    tree = load_tree(cfg.metric)
    pattern = parse_pattern("unstructured", scope=cfg.scope)
    targets = schedule_targets(cfg)
    if evaluator is None:
        from gpsearch.pruning.evaluator import Evaluator

        evaluator = Evaluator(cfg.model, cfg.calib(), cfg.dtype, cfg.device, progress=progress)
    elif evaluator.calib != cfg.calib():
        raise UserError(f"the evaluator's calibration {evaluator.calib.to_dict()} differs from the "
                        f"run's {cfg.calib().to_dict()}")
    ev = cfg.evaluation()
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        log(f"iterative: metric {to_prefix(tree)}, {cfg.schedule} schedule, {len(targets)} rounds "
            f"to {cfg.target_sparsity:.2%} zeros; run directory {run_dir}")
        state = {"config": cfg.to_dict(), "tree": to_prefix(tree),
                 "calibration": cfg.calib().to_dict(),
                 "evaluation": ev.to_dict(), "targets": targets, "history": [],
                 "dense_ppl": evaluator.perplexity(ev)["ppl"], "finished": False}
        log(f"dense perplexity ({ev.data} {ev.split}, seqlen {ev.seqlen}): "
            f"{state['dense_ppl']:.3f}")
    new_allocation = "allocation" not in state
    alloc = run_allocation(evaluator, cfg, tree, pattern, state)  # before loading: dense model
    if alloc is not None and new_allocation:
        log(f"allocation {alloc.method}: final block sparsities "
            f"{' '.join(f'{b:.3f}' for b in alloc.blocks)}")
    if state.get("weights"):  # a resumed run
        load_model(evaluator.model, str(run_dir / state["weights"]))
        log(f"resumed {run_dir} after round {len(state['history'])}")
    tuner = Finetuner(evaluator.lm.tokenizer, cfg.finetune(), progress=progress)
    done_now = 0
    while len(state["history"]) < len(targets) and (max_rounds is None or done_now < max_rounds):
        r = len(state["history"]) + 1
        sparsity = round_sparsity(evaluator, alloc, targets[r - 1], cfg.scope)
        rec = _round(evaluator, tree, pattern, sparsity, r, cfg, ev, tuner)
        state["history"].append(rec)
        state["finished"] = len(state["history"]) == len(targets)
        _save(run_dir, state, evaluator.model)
        done_now += 1
        log(f"round {r}/{len(targets)}: sparsity {rec['sparsity']:.2%} | PPL after pruning "
            f"{rec['ppl_pruned']:.3f} | after training {rec['ppl_trained']:.3f} | recovery "
            f"{rec['recovery']:.3f} ({rec['recovery_pct']:.1f}%)")
    if state["finished"]:
        state["summary"] = summary(state, run_dir)
        _save(run_dir, state)
        for line in summary_lines(state):
            log(line)
    return state


def _round(evaluator, tree, pattern, target, r, cfg, ev, tuner) -> dict:
    t0 = time.perf_counter()
    prune_to(evaluator, current_scores(evaluator, tree, fresh=r > 1), target, pattern)
    t1 = time.perf_counter()
    pruned = evaluator.perplexity(ev)["ppl"]
    t2 = time.perf_counter()
    train = tuner(evaluator.model, zero_masks(evaluator.linears), seed=cfg.seed * 1000 + r)
    t3 = time.perf_counter()
    trained = evaluator.perplexity(ev)["ppl"]
    recovery = pruned - trained
    out = {"round": r, "target_sparsity": float(target), "sparsity": sparsity_of(evaluator),
            "ppl_pruned": pruned, "ppl_trained": trained, "recovery": recovery,
            "recovery_pct": 100.0 * recovery / pruned if math.isfinite(pruned) and pruned else 0.0,
            "train": train, "prune_s": t1 - t0, "train_s": t3 - t2,
            "eval_s": (t2 - t1) + (time.perf_counter() - t3)}
    if hasattr(target, "allocation"):
        out["block_sparsity"] = per_block(evaluator.layer_counts())
    return out


def summary(state: dict, run_dir: Path) -> dict:
    h = state["history"]
    final = h[-1]["ppl_trained"] if h else state["dense_ppl"]
    return {"rounds": len(h), "final_sparsity": h[-1]["sparsity"] if h else 0.0,
            "dense_ppl": state["dense_ppl"], "final_ppl": final,
            "ppl_change_vs_dense": final - state["dense_ppl"],
            "ppl_change_vs_dense_pct": 100.0 * (final / state["dense_ppl"] - 1.0),
            "run_dir": str(run_dir), "weights": str(run_dir / state["weights"])}


def summary_lines(state: dict) -> list[str]:
    s = state["summary"]
    lines = [f"done: {s['rounds']} rounds, final sparsity {s['final_sparsity']:.2%}",
             f"{'round':>5} {'sparsity':>9} {'PPL pruned':>11} {'PPL trained':>12} {'recovery':>9}"]
    for h in state["history"]:
        lines.append(f"{h['round']:>5} {h['sparsity']:>9.2%} {h['ppl_pruned']:>11.3f} "
                     f"{h['ppl_trained']:>12.3f} {h['recovery']:>9.3f}")
    lines += [f"dense PPL {s['dense_ppl']:.3f} -> final PPL {s['final_ppl']:.3f} "
              f"({s['ppl_change_vs_dense']:+.3f}, {s['ppl_change_vs_dense_pct']:+.1f}%)",
              f"model state: {s['weights']}; history: {Path(s['run_dir']) / 'run.json'}"]
    return lines
