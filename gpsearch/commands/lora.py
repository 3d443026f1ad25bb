"""LoRA recovery fine-tuning of a pruned model (e.g. a directory written by prune --save): adapters
(r 8, alpha 16, dropout 0.05 by default) on the linears inside the decoder blocks, trained on the
calibration split's tokens, then merged so that every pruned weight stays exactly zero. Prints the
TEST-split perplexity before, with the adapters, and after the merge, and the sparsity (fraction
of weights set to zero) before and after."""

from __future__ import annotations

import argparse

from gpsearch.api import LoraConfig
from gpsearch.commands.common import add_calib_args, add_model_args

D = LoraConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_calib_args(p)
    p.add_argument("--r", type=int, default=D.r, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=int, default=D.alpha, help="LoRA alpha (default 16)")
    p.add_argument("--dropout", type=float, default=D.dropout, help="LoRA dropout (default 0.05)")
    p.add_argument("--lr", type=float, default=D.lr)
    p.add_argument("--epochs", type=int, default=D.epochs)
    p.add_argument("--max-steps", type=int, default=D.max_steps, help="cap on steps per epoch")
    p.add_argument("--train-batch-size", type=int, default=D.train_batch_size)
    p.add_argument("--train-seed", type=int, default=D.train_seed)
    p.add_argument("--save", default=None, help="save the merged model (HF directory) here")
    p.add_argument("--json", default=None, help="write the record to this file")


def config_from(args) -> LoraConfig:
    return LoraConfig(
        model=args.model, dtype=args.dtype, device=args.device, data=args.data,
        seqlen=args.seqlen, batch_size=args.batch_size, max_windows=args.max_windows, r=args.r,
        alpha=args.alpha, dropout=args.dropout, lr=args.lr, epochs=args.epochs,
        max_steps=args.max_steps, train_batch_size=args.train_batch_size,
        train_seed=args.train_seed, save=args.save, record=args.json)


def run(args) -> int:
    from gpsearch import api

    api.lora(config_from(args))  # prints as it goes; writes --json and --save
    return 0
