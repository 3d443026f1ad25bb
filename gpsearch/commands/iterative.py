"""Iterative pruning with fine-tuning (seed 000): each round prunes --prune-fraction of the
CURRENT non-zero weights (or follows the Zhu & Gupta cubic schedule) with any metric tree,
measures perplexity, fine-tunes with the pruned weights held at zero, measures again. State is
saved after every round; --resume DIR continues after the last finished round. Sparsity is the
fraction of weights set to zero."""

from __future__ import annotations

import argparse

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M
from gpsearch.api import IterativeConfig
from gpsearch.model.load import EMBEDDED


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=EMBEDDED, help="model spec (embedded, hub id, dir, .gguf)")
    p.add_argument("--metric", default="magnitude",
                   help="metric tree: trees/NAME.json, a bare name (magnitude, wanda...) or prefix")
    p.add_argument("--target-sparsity", type=float, default=0.9, help="final fraction of zeros")
    p.add_argument("--prune-fraction", type=float, default=0.1,
                   help="geometric: fraction of the current non-zero weights pruned per round")
    p.add_argument("--schedule", default="geometric", choices=("geometric", "cubic"),
                   help="geometric (fixed fraction per round) or cubic (Zhu & Gupta over "
                        "--max-iterations rounds)")
    p.add_argument("--epochs-per-iteration", type=int, default=3,
                   help="fine-tuning epochs per round")
    p.add_argument("--max-steps", type=int, default=2500, help="max optimizer steps per epoch")
    p.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch size (sequences)")
    p.add_argument("--max-iterations", type=int, default=25, help="at most this many rounds")
    p.add_argument("--seed", type=int, default=42, help="fine-tuning seed")
    p.add_argument("--scope", default="row", choices=("row", "matrix"),
                   help="comparison group of the metric: each output row or the whole matrix")
    p.add_argument("--data", default="wiki", help="text for calibration, training and evaluation")
    p.add_argument("--nsamples", type=int, default=128, help="calibration samples (X, G)")
    p.add_argument("--seqlen", type=int, default=256, help="tokens per sample / window / block")
    p.add_argument("--calib-seed", type=int, default=0, help="calibration sampling seed")
    p.add_argument("--calib-batch-size", type=int, default=4,
                   help="calibration and evaluation batch size")
    p.add_argument("--eval-split", default="test", choices=("test", "validation"),
                   help="split the per-round perplexity is measured on")
    p.add_argument("--max-windows", type=int, default=None, help="evaluate on at most N windows")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--allocation", default=None,
                   help="layer-wise sparsity: uniform, owl (from the metric's dense scores) or an "
                        "allocation FILE.json for --target-sparsity; every round follows its "
                        "profile scaled to the round's sparsity (default: none, every linear "
                        "alike)")
    p.add_argument("--owl-m", type=float, default=DEFAULT_OWL_M,
                   help="OWL outlier threshold (default %(default)g)")
    p.add_argument("--owl-lambda", type=float, default=DEFAULT_OWL_LAMBDA,
                   help="OWL: block sparsities within the target +- lambda (default %(default)g)")
    p.add_argument("--save", default=None,
                   help="run directory (state after every round; default runs/iterative_<time>)")
    p.add_argument("--resume", default=None,
                   help="continue the run in this directory (its saved config is used)")


def config_from(args) -> IterativeConfig:
    return IterativeConfig(
        model=args.model, metric=args.metric, target_sparsity=args.target_sparsity,
        prune_fraction=args.prune_fraction, schedule=args.schedule,
        max_iterations=args.max_iterations, epochs_per_iteration=args.epochs_per_iteration,
        max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        scope=args.scope, data=args.data, nsamples=args.nsamples, seqlen=args.seqlen,
        calib_seed=args.calib_seed, calib_batch_size=args.calib_batch_size,
        eval_split=args.eval_split, max_windows=args.max_windows, dtype=args.dtype,
        device=args.device, allocation=args.allocation, owl_m=args.owl_m,
        owl_lambda=args.owl_lambda)


def run(args) -> int:
    from gpsearch import api

    cfg = None if args.resume else config_from(args)  # a resumed run keeps its saved config
    api.iterative(cfg, save_dir=args.save, resume=args.resume)  # prints as it goes
    return 0
