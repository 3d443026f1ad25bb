"""LoRA recovery fine-tuning of a pruned model (e.g. a directory written by prune --save): adapters
(r 8, alpha 16, dropout 0.05 by default) on the linears inside the decoder blocks, trained on the
calibration split's tokens, then merged so that every pruned weight stays exactly zero. Prints the
TEST-split perplexity before, with the adapters, and after the merge, and the sparsity (fraction
of weights set to zero) before and after."""

from __future__ import annotations

import argparse
import time

from ..save import check_save_dir
from .common import add_calib_args, add_model_args, eval_from, write_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_calib_args(p)
    p.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=int, default=16, help="LoRA alpha (default 16)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (default 0.05)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=200, help="cap on steps per epoch")
    p.add_argument("--train-batch-size", type=int, default=4)
    p.add_argument("--train-seed", type=int, default=42)
    p.add_argument("--save", default=None, help="save the merged model (HF directory) here")
    p.add_argument("--json", default=None, help="write the record to this file")


def run(args) -> int:
    from ..data import eval_windows
    from ..models import load_model
    from ..perplexity import perplexity
    from ..recovery.lora import LoraSettings, lora_recover
    from ..save import save_pruned

    check_save_dir(args.save)
    s = LoraSettings(r=args.r, alpha=args.alpha, dropout=args.dropout, lr=args.lr,
                     epochs=args.epochs, max_steps=args.max_steps, batch_size=args.train_batch_size,
                     seqlen=args.seqlen, seed=args.train_seed, data=args.data)
    ev = eval_from(args, "test")
    t0 = time.perf_counter()
    lm = load_model(args.model, args.dtype, args.device)
    windows = eval_windows(lm.tokenizer, ev)
    measure = lambda m: perplexity(m, windows, ev.batch_size)["ppl"]  # noqa: E731
    model, rec = lora_recover(lm.model, lm.tokenizer, s, measure=measure, progress=True)
    lm.model = model
    rec.update(command="lora", model=args.model, evaluation=ev.to_dict(),
               wall_s=time.perf_counter() - t0)
    print(f"LoRA r {s.r} alpha {s.alpha} dropout {s.dropout}: {rec['train']['steps']} steps on the "
          f"calibration split of {s.data!r}, {rec['trainable_params']:,} trainable parameters")
    print(f"perplexity ({ev.split}, seqlen {ev.seqlen}): before {rec['ppl_before']:.3f}  "
          f"with adapters {rec['ppl_adapters']:.3f}  merged (zeros kept) {rec['ppl_after']:.3f}")
    print(f"sparsity: before {rec['sparsity_before']:.4f}  after {rec['sparsity_after']:.4f}  "
          f"(a naive merge would leave {rec['naive_merge_sparsity_of_adapted']:.4f})")
    write_record(args.json, rec)
    if args.save:
        print(f"model saved to {save_pruned(lm, args.save, rec)}")
    return 0
