"""Progressive three-tier block pruning (seed 004). Each weight matrix is cut into blocks (16x16 by
default) that are DENSE, 2:4 or TOPK (only the k highest-scoring weights kept); a CSV schedule
(iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs; see
schedules/tiers_example.csv) demotes blocks one way, scored by any metric tree on the current
weights, with masked fine-tuning between iterations. Tier maps are saved per iteration in the run
directory (--save) and a run continues with --resume. Reports per iteration the tier shares, the
sparsity (fraction of weights set to zero) and the TEST-split perplexity."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import UserError
from .common import add_calib_args, add_model_args, calib_from, eval_from, write_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True, help="CSV schedule (see schedules/tiers_example.csv)")
    p.add_argument("--metric", default="wanda",
                   help="metric tree scoring the weights: trees/NAME.json, a name, or a prefix "
                        "expression (default wanda)")
    p.add_argument("--block-size", type=int, default=16, help="block side (default 16)")
    p.add_argument("--topk", type=int, default=10, help="weights kept per TOPK block (default 10)")
    p.add_argument("--save", default=None, help="run directory: tier maps per iteration, weights, "
                   "run.json (must be new or empty)")
    p.add_argument("--resume", default=None, help="continue the run directory of an earlier run")
    p.add_argument("--save-model", default=None, help="also save the final model (HF directory)")
    add_model_args(p)
    add_calib_args(p)
    g = p.add_argument_group("fine-tuning between iterations (masks held)")
    g.add_argument("--lr", type=float, default=1e-5)
    g.add_argument("--ft-batch-size", type=int, default=8)
    g.add_argument("--ft-seqlen", type=int, default=None, help="default: --seqlen")
    g.add_argument("--max-steps", type=int, default=2500, help="cap on steps per epoch")
    g.add_argument("--ft-seed", type=int, default=42)
    p.add_argument("--json", default=None, help="write the run record to this file")


def run(args) -> int:
    from ..baselines.finetune import Finetuner, FinetuneConfig
    from ..evaluator import Evaluator
    from ..tiers.tiers_run import run_tiers
    from ..tiers.tiers_schedule import load_schedule
    from ..tree import load_tree, to_prefix

    schedule = load_schedule(args.schedule)
    tree = load_tree(args.metric)
    if args.block_size < 4 or args.topk < 1:
        raise UserError("--block-size must be >= 4 and --topk >= 1")
    if args.save and args.resume and Path(args.save).resolve() != Path(args.resume).resolve():
        raise UserError("--save and --resume name different directories; give only --resume")
    run_dir, resume = (args.resume, True) if args.resume else (args.save, False)
    calib, ev = calib_from(args), eval_from(args, "test")
    ft_cfg = FinetuneConfig(lr=args.lr, batch_size=args.ft_batch_size, max_steps=args.max_steps,
                            seqlen=args.ft_seqlen or args.seqlen, seed=args.ft_seed, data=args.data)
    print(f"metric: {to_prefix(tree)}  blocks {args.block_size}x{args.block_size}  topk {args.topk}")
    for s in schedule:
        print(f"  iteration {s.iteration}: dense {s.dense:g} mid_2_4 {s.mid_2_4:g} topk {s.topk:g} "
              f"-> sparsity {s.sparsity(args.block_size, args.topk):.4f}, {s.epochs} epochs")
    print(f"calibration: {calib.to_dict()}  evaluation: {ev.to_dict()}")
    t0 = time.perf_counter()
    evaluator = Evaluator(args.model, calib, args.dtype, args.device, args.cache_dir, progress=True)
    finetuner = Finetuner(evaluator.lm.tokenizer, ft_cfg)
    rec = run_tiers(evaluator, tree, schedule, ev, finetuner, args.block_size, args.topk,
                    run_dir, resume)
    rec.update(command="tiers", finetune=ft_cfg.to_dict(), wall_s=time.perf_counter() - t0)
    print(f"{'iter':>4} {'dense':>6} {'2:4':>6} {'topk':>6} {'sparsity':>8} {'ppl pruned':>11} "
          f"{'ppl tuned':>10}")
    for h in rec["history"]:
        sh = h["shares"]
        print(f"{h['iteration']:>4} {sh['dense']:6.3f} {sh['mid_2_4']:6.3f} {sh['topk']:6.3f} "
              f"{h['sparsity']:8.4f} {h['ppl_pruned']:11.3f} {h['ppl_finetuned']:10.3f}")
    write_record(args.json, rec)
    if args.save_model:
        from ..save import save_pruned

        print(f"model saved to {save_pruned(evaluator.lm, args.save_model, rec)}")
    return 0
