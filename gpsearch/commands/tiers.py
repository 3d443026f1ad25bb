"""Progressive three-tier block pruning (seed 004). Each weight matrix is cut into blocks (16x16 by
default) that are DENSE, 2:4 or TOPK (only the k highest-scoring weights kept); a CSV schedule
(iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs; see
schedules/tiers_example.csv) demotes blocks one way, scored by any metric tree on the current
weights, with masked fine-tuning between iterations. Tier maps are saved per iteration in the run
directory (--save) and a run continues with --resume. Reports per iteration the tier shares, the
sparsity (fraction of weights set to zero) and the TEST-split perplexity."""

from __future__ import annotations

import argparse

from gpsearch.api import TiersConfig
from gpsearch.commands.common import add_calib_args, add_model_args

D = TiersConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True,
                   help="CSV schedule (see schedules/tiers_example.csv)")
    p.add_argument("--metric", default=D.metric,
                   help="metric tree scoring the weights: trees/NAME.json, a name, or a prefix "
                        "expression (default wanda)")
    p.add_argument("--block-size", type=int, default=D.block_size, help="block side (default 16)")
    p.add_argument("--topk", type=int, default=D.topk,
                   help="weights kept per TOPK block (default 10)")
    p.add_argument("--save", default=None, help="run directory: tier maps per iteration, weights, "
                   "run.json (must be new or empty)")
    p.add_argument("--resume", default=None, help="continue the run directory of an earlier run")
    p.add_argument("--save-model", default=None, help="also save the final model (HF directory)")
    add_model_args(p)
    add_calib_args(p)
    g = p.add_argument_group("fine-tuning between iterations (masks held)")
    g.add_argument("--lr", type=float, default=D.lr)
    g.add_argument("--ft-batch-size", type=int, default=D.ft_batch_size)
    g.add_argument("--ft-seqlen", type=int, default=D.ft_seqlen, help="default: --seqlen")
    g.add_argument("--max-steps", type=int, default=D.max_steps, help="cap on steps per epoch")
    g.add_argument("--ft-seed", type=int, default=D.ft_seed)
    p.add_argument("--json", default=None, help="write the run record to this file")


def config_from(args) -> TiersConfig:
    return TiersConfig(
        schedule=args.schedule, metric=args.metric, block_size=args.block_size, topk=args.topk,
        save=args.save, resume=args.resume, save_model=args.save_model, model=args.model,
        dtype=args.dtype, device=args.device, cache_dir=args.cache_dir, data=args.data,
        nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed, batch_size=args.batch_size,
        max_windows=args.max_windows, lr=args.lr, ft_batch_size=args.ft_batch_size,
        ft_seqlen=args.ft_seqlen, max_steps=args.max_steps, ft_seed=args.ft_seed,
        record=args.json)


def run(args) -> int:
    from gpsearch import api

    api.tiers(config_from(args))  # prints as it goes; writes --json and --save-model
    return 0
