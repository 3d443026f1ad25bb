"""Progressive three-tier block pruning (seed 004): the loop over a schedule.

Per schedule row: score every prunable linear with a metric tree on its CURRENT weights (``W`` is
the current |weight|; ``X``/``H``/``G`` are recomputed on the current model once anything has been
pruned or fine-tuned), run the two demotion phases of ``tiers_math.demote_iteration``, zero the
pruned weights, measure perplexity, fine-tune with the masks held, measure again.

A run directory (``save_dir``) holds ``run.json`` (configuration and per-iteration history),
``tiers_NNN.safetensors`` per iteration (tier maps ``tiers/<linear>`` int8 and pruned masks
``mask/<linear>`` uint8) and ``weights.safetensors`` (the model after the latest completed
iteration). ``resume`` continues such a directory from its last completed iteration.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from gpsearch.config import EvalConfig
from gpsearch.errors import UserError
from gpsearch.io import replacing, write_json
from gpsearch.methods.tiers_math import TIER_NAMES, demote_iteration, new_tiers, tier_shares
from gpsearch.methods.tiers_schedule import Step
from gpsearch.pruning.features import collect_gradients, collect_input_stats
from gpsearch.tree import EXTENDED, Node, check_score, evaluate, terminals_used, to_prefix

# finetune(model, pruned_masks {linear name: bool, True = pruned}, epochs) -> dict of stats
Finetune = Callable[[torch.nn.Module, dict, int], dict]


def current_scores(evaluator, tree: Node, fresh: bool) -> dict[str, torch.Tensor]:
    """The tree's score of every prunable linear on the current weights. With ``fresh``, the
    data terminals (X, S, H, G) are recomputed on the current (pruned, fine-tuned) model;
    otherwise the evaluator's dense features are used."""
    needed = terminals_used(tree)
    local, grads = None, None
    if fresh and needed & {"X", "S", "H"}:
        stats = collect_input_stats(evaluator.model, evaluator.linears,
                                    evaluator.features.samples(),
                                    evaluator.calib.batch_size, hessian="H" in needed)
        local = {"X": {n: s.x for n, s in stats.items()}}
        if "H" in needed:
            local["H"] = {n: s.inverse_hessian_diag() for n, s in stats.items()}
    if fresh and "G" in needed:
        grads = collect_gradients(evaluator.model, evaluator.linears, evaluator.features.samples())
    out = {}
    for name, lin in evaluator.linears.items():
        terms = evaluator.terminals(name, needed - {"W", "G"}, local)
        if "W" in needed:
            terms["W"] = lin.weight.detach().abs().float()
        if "G" in needed:
            terms["G"] = grads[name] if grads is not None else evaluator.features.get("G")[name]
        out[name] = check_score(evaluate(tree, terms, EXTENDED), lin.weight.shape)
    return out


def model_shares(tiers: dict[str, torch.Tensor]) -> dict[str, float]:
    """Share of all blocks (over every linear) in each tier."""
    total = sum(t.numel() for t in tiers.values())
    return {name: sum(tier_shares(t)[name] * t.numel() for t in tiers.values()) / total
            for name in TIER_NAMES.values()}


def sparsity(linears: dict) -> float:
    zeros = sum(int((lin.weight == 0).sum()) for lin in linears.values())
    return zeros / sum(lin.weight.numel() for lin in linears.values())


def save_iteration(run_dir: Path, iteration: int, tiers: dict, keep: dict, model) -> None:
    """Tier maps and masks of one iteration, and the model weights (atomically replaced)."""
    tensors = {f"tiers/{n}": t.contiguous() for n, t in tiers.items()}
    tensors.update({f"mask/{n}": (~k).to(torch.uint8).contiguous() for n, k in keep.items()})
    save_file(tensors, str(run_dir / f"tiers_{iteration:03d}.safetensors"))
    with replacing(run_dir / "weights.safetensors") as tmp:
        save_model(model, str(tmp))


def load_iteration(run_dir: Path, iteration: int, linears: dict) -> tuple[dict, dict]:
    data = load_file(str(run_dir / f"tiers_{iteration:03d}.safetensors"))
    missing = [n for n in linears if f"tiers/{n}" not in data]
    if missing:
        raise UserError(f"{run_dir}: tier maps do not match this model (missing {missing[0]})")
    return ({n: data[f"tiers/{n}"] for n in linears},
            {n: data[f"mask/{n}"] == 0 for n in linears})


def run_tiers(evaluator, tree: Node, schedule: list[Step], ev: EvalConfig | None,
              finetune: Finetune, block_size: int = 16, topk: int = 10,
              save_dir: str | Path | None = None, resume: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Run the schedule on ``evaluator.model`` in place (``ev`` None: no perplexity per iteration).
    Returns the JSON-able run record (configuration, per-iteration history, final sparsity and
    perplexity); the tier maps and masks are in the run directory."""
    linears, bs, k = evaluator.linears, block_size, topk
    config = {"model": evaluator.lm.spec, "tree": to_prefix(tree), "block_size": bs, "topk": k,
              "schedule": [s.to_dict() for s in schedule], "calibration": evaluator.calib.to_dict(),
              "evaluation": ev.to_dict() if ev is not None else None}
    run_dir = Path(save_dir) if save_dir else None
    record = {"config": config, "history": [], "completed": 0}
    tiers = {n: new_tiers(lin.weight.shape, bs) for n, lin in linears.items()}
    keep = {n: torch.ones_like(lin.weight, dtype=torch.bool) for n, lin in linears.items()}
    if run_dir and resume:
        record, tiers, keep = _resume(run_dir, config, evaluator, log)
    elif run_dir:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"run directory {run_dir} exists and is not empty (use --resume)")
        run_dir.mkdir(parents=True, exist_ok=True)
    ppl = (lambda: evaluator.perplexity(ev)["ppl"]) if ev is not None else (lambda: None)
    if record["completed"] == 0 and ev is not None:
        record["dense_ppl"] = ppl()
        log(f"dense perplexity: {record['dense_ppl']:.3f}")
    for step in schedule[record["completed"]:]:
        t0 = time.perf_counter()
        touched = record["completed"] > 0 or any(not kp.all() for kp in keep.values())
        scores = current_scores(evaluator, tree, fresh=touched)
        with torch.no_grad():
            for n, lin in linears.items():
                tiers[n], keep[n] = demote_iteration(tiers[n], scores[n], keep[n], bs, k,
                                                     step.dense_to_2_4, step.mid_2_4_to_topk)
                lin.weight.masked_fill_(~keep[n], 0.0)
        del scores
        rec = {"iteration": step.iteration, "shares": model_shares(tiers),
               "target_shares": {"dense": step.dense, "mid_2_4": step.mid_2_4, "topk": step.topk},
               "sparsity": sparsity(linears), "implied_sparsity": step.sparsity(bs, k),
               "ppl_pruned": ppl(), "epochs": step.epochs}
        if step.epochs > 0:
            rec["finetune"] = finetune(evaluator.model, {n: ~kp for n, kp in keep.items()},
                                       step.epochs)
            with torch.no_grad():  # belt and braces: the fine-tuner must already keep them zero
                for n, lin in linears.items():
                    lin.weight.masked_fill_(~keep[n], 0.0)
        rec["ppl_finetuned"] = ppl() if step.epochs > 0 else rec["ppl_pruned"]
        rec["sparsity_after_finetune"] = sparsity(linears)
        rec["seconds"] = time.perf_counter() - t0
        record["history"].append(rec)
        record["completed"] = step.iteration
        sh = rec["shares"]
        ppls = "" if ev is None else (f"  ppl pruned {rec['ppl_pruned']:.3f} -> fine-tuned "
                                      f"{rec['ppl_finetuned']:.3f}")
        log(f"iteration {step.iteration}: dense {sh['dense']:.3f} mid_2_4 {sh['mid_2_4']:.3f} "
            f"topk {sh['topk']:.3f}  sparsity {rec['sparsity']:.4f} (schedule implies "
            f"{rec['implied_sparsity']:.4f}){ppls} ({step.epochs} epochs)")
        if run_dir:
            save_iteration(run_dir, step.iteration, tiers, keep, evaluator.model)
            write_json(run_dir / "run.json", record)
    record["final_sparsity"] = sparsity(linears)
    record["final_ppl"] = record["history"][-1]["ppl_finetuned"] if record["history"] else None
    return record


def _resume(run_dir: Path, config: dict, evaluator, log) -> tuple[dict, dict, dict]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"cannot resume: {path} not found")
    record = json.loads(path.read_text())
    old = record["config"]
    for key in ("model", "tree", "block_size", "topk", "calibration"):
        if old[key] != config[key]:
            raise UserError(f"cannot resume {run_dir}: {key} differs "
                            f"({old[key]!r} vs {config[key]!r})")
    n = record["completed"]
    if old["schedule"][:n] != config["schedule"][:n]:
        raise UserError(f"cannot resume {run_dir}: the first {n} schedule rows differ")
    record["config"] = config
    tiers, keep = load_iteration(run_dir, n, evaluator.linears)
    load_model(evaluator.model, str(run_dir / "weights.safetensors"))
    log(f"resumed {run_dir} after iteration {n}")
    return record, tiers, keep
