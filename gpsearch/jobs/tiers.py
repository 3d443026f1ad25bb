"""``gpsearch tiers``: progressive three-tier block pruning (DENSE / 2:4 / TOPK blocks) driven by
a CSV schedule, masked fine-tuning between iterations, a resumable run directory, the per-iteration
table, the record and the optionally saved final model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpsearch.config import FlatCalibration
from gpsearch.errors import UserError
from gpsearch.model.load import EMBEDDED


@dataclass
class TiersConfig(FlatCalibration):
    """One tiers run; the CLI's defaults are these."""

    schedule: str | None = None  # CSV schedule (see schedules/tiers_example.csv); required
    metric: str = "wanda"  # metric tree: trees/NAME.json, a name or a prefix expression
    block_size: int = 16  # block side
    topk: int = 10  # weights kept per TOPK block
    save: str | None = None  # run directory (must be new or empty)
    resume: str | None = None  # continue the run directory of an earlier run
    save_model: str | None = None  # also save the final model (HF directory)
    model: str = EMBEDDED
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None
    data: str = "wiki"  # calibration, evaluation (TEST split) and fine-tuning text
    nsamples: int = 128
    seqlen: int = 256
    seed: int = 0  # calibration sampling seed
    batch_size: int = 4  # calibration / evaluation batch size
    max_windows: int | None = None  # evaluate on at most this many windows
    lr: float = 1e-5  # fine-tuning between iterations (masks held)
    ft_batch_size: int = 8
    ft_seqlen: int | None = None  # default: seqlen
    max_steps: int = 2500  # cap on fine-tuning steps per epoch
    ft_seed: int = 42
    record: str | None = None  # write the run record (with the code's commit) to this file



def run_tiers(cfg: TiersConfig, log: Callable[[str], None] = print,
              progress: bool = True) -> dict:
    """Run (or with ``cfg.resume`` continue) the schedule, print the per-iteration table, write
    ``cfg.record`` and save ``cfg.save_model``; returns the run record (configuration, history,
    final sparsity and perplexity, the fine-tuning settings)."""
    from gpsearch.jobs.record import write_record
    from gpsearch.methods.finetune import FinetuneConfig, Finetuner
    from gpsearch.methods.tiers import run_tiers as run_schedule
    from gpsearch.methods.tiers_schedule import load_schedule
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.tree import load_tree, to_prefix

    if not cfg.schedule:
        raise UserError("tiers needs a schedule: a CSV file (see schedules/tiers_example.csv)")
    schedule = load_schedule(cfg.schedule)
    tree = load_tree(cfg.metric)
    if cfg.block_size < 4 or cfg.topk < 1:
        raise UserError("--block-size must be >= 4 and --topk >= 1")
    if cfg.save and cfg.resume and Path(cfg.save).resolve() != Path(cfg.resume).resolve():
        raise UserError("--save and --resume name different directories; give only --resume")
    run_dir, resume = (cfg.resume, True) if cfg.resume else (cfg.save, False)
    calib, ev = cfg.calib(), cfg.evaluation()
    ft_cfg = FinetuneConfig(lr=cfg.lr, batch_size=cfg.ft_batch_size, max_steps=cfg.max_steps,
                            seqlen=cfg.ft_seqlen or cfg.seqlen, seed=cfg.ft_seed, data=cfg.data)
    log(f"metric: {to_prefix(tree)}  blocks {cfg.block_size}x{cfg.block_size}  topk {cfg.topk}")
    for s in schedule:
        log(f"  iteration {s.iteration}: dense {s.dense:g} mid_2_4 {s.mid_2_4:g} "
            f"topk {s.topk:g} -> sparsity {s.sparsity(cfg.block_size, cfg.topk):.4f}, "
            f"{s.epochs} epochs")
    log(f"calibration: {calib.to_dict()}  evaluation: {ev.to_dict()}")
    t0 = time.perf_counter()
    evaluator = Evaluator(cfg.model, calib, cfg.dtype, cfg.device, cfg.cache_dir,
                          progress=progress)
    finetuner = Finetuner(evaluator.lm.tokenizer, ft_cfg, progress=progress)
    rec = run_schedule(evaluator, tree, schedule, ev, finetuner, cfg.block_size, cfg.topk,
                       run_dir, resume, log=log)
    rec.update(command="tiers", finetune=ft_cfg.to_dict(), wall_s=time.perf_counter() - t0)
    log(f"{'iter':>4} {'dense':>6} {'2:4':>6} {'topk':>6} {'sparsity':>8} {'ppl pruned':>11} "
        f"{'ppl tuned':>10}")
    for h in rec["history"]:
        sh = h["shares"]
        log(f"{h['iteration']:>4} {sh['dense']:6.3f} {sh['mid_2_4']:6.3f} {sh['topk']:6.3f} "
            f"{h['sparsity']:8.4f} {h['ppl_pruned']:11.3f} {h['ppl_finetuned']:10.3f}")
    write_record(cfg.record, rec, log)
    if cfg.save_model:
        from gpsearch.model.save import save_pruned

        log(f"model saved to {save_pruned(evaluator.lm, cfg.save_model, rec)}")
    return rec
