"""Structured pruning baselines (seed 002) under the shared calibration configuration: ShortGPT
(remove the layers with the lowest Block Influence), width pruning of attention groups and MLP
channels (H-GSP family: Taylor or Wanda importance, or any metric tree; global ranking; optional
layer removal) and SlimGPT (structured OBS). The model becomes physically smaller: the parameter
count before/after and the TEST-split perplexity are printed; --save writes a Hugging Face
directory (models with per-layer widths reload with from_pretrained(dir, trust_remote_code=True)).
--lora adds LoRA recovery fine-tuning. Width pruning and SlimGPT need LLaMA-style blocks
(LLaMA, SmolLM2, Mistral, Qwen2); ShortGPT also works on OPT."""

from __future__ import annotations

import argparse
import time

from ..save import check_save_dir
from .common import add_calib_args, add_model_args, calib_from, eval_from, write_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=("shortgpt", "width", "slimgpt"))
    p.add_argument("--n-remove-layers", type=int, default=None,
                   help="shortgpt: layers to remove (default 25%% of them); width: also remove "
                        "this many lowest-Block-Influence layers (default 0)")
    p.add_argument("--pruning-ratio", type=float, default=0.2,
                   help="width/slimgpt: fraction of attention groups and MLP channels removed")
    p.add_argument("--importance", default="taylor",
                   help="width: taylor (|W|*G), wanda (|W|*sqrt(X)) or any metric tree spec")
    p.add_argument("--ranking", default="global", choices=("global", "layer"),
                   help="width: rank units across all layers, or remove the ratio in each layer")
    p.add_argument("--max-samples", type=int, default=None,
                   help="slimgpt: cap on the tokens feeding each layer's Hessian")
    p.add_argument("--ratio-schedule", default="uniform", choices=("uniform", "log"),
                   help="slimgpt: same ratio in every layer, or growing with depth (log)")
    p.add_argument("--rounds", type=int, default=8, help="slimgpt: greedy batches for MLP channels")
    add_model_args(p)
    add_calib_args(p)
    p.add_argument("--lora", action="store_true", help="then LoRA recovery (r 8, alpha 16, dropout 0.05)")
    p.add_argument("--lora-steps", type=int, default=200, help="LoRA steps per epoch")
    p.add_argument("--lora-lr", type=float, default=1e-4)
    p.add_argument("--lora-batch-size", type=int, default=4)
    p.add_argument("--save", default=None, help="save the pruned model (HF directory) here")
    p.add_argument("--json", default=None, help="write the record to this file")


def run(args) -> int:
    from ..evaluator import Evaluator
    from ..models import decoder_blocks
    from ..structured.surgery import save_structured

    check_save_dir(args.save)
    calib, ev = calib_from(args), eval_from(args, "test")
    print(f"calibration: {calib.to_dict()}")
    t0 = time.perf_counter()
    evaluator = Evaluator(args.model, calib, args.dtype, args.device, args.cache_dir, progress=True)
    lm = evaluator.lm
    dense = evaluator.perplexity(ev)["ppl"]
    if args.method == "shortgpt":
        from ..structured.shortgpt import shortgpt

        n = args.n_remove_layers if args.n_remove_layers is not None \
            else len(decoder_blocks(lm.model)) // 4
        rec = shortgpt(lm, calib, n)
    elif args.method == "width":
        from ..structured.width import width_prune

        rec = width_prune(evaluator, args.importance, args.pruning_ratio, args.ranking,
                          args.n_remove_layers or 0)
    else:
        from ..structured.slimgpt import slimgpt

        rec = slimgpt(lm, calib, args.pruning_ratio, args.max_samples, args.ratio_schedule, args.rounds)
    rec.update(command="structured", dense_ppl=dense, ppl=evaluator.perplexity(ev)["ppl"],
               evaluation=ev.to_dict(), model=args.model)
    print(f"parameters: {rec['params_before']:,} -> {rec['params_after']:,} "
          f"({100 * (1 - rec['params_after'] / rec['params_before']):.2f}% fewer)")
    if rec.get("removed_layers"):
        print(f"removed layers: {rec['removed_layers']}")
    print(f"perplexity ({ev.split}, seqlen {ev.seqlen}): dense {dense:.3f} -> pruned {rec['ppl']:.3f}")
    if args.lora:
        from ..recovery.lora import LoraSettings, lora_recover

        s = LoraSettings(lr=args.lora_lr, max_steps=args.lora_steps, batch_size=args.lora_batch_size,
                         seqlen=args.seqlen, data=args.data)
        from ..perplexity import perplexity

        windows = evaluator.windows(ev)
        _, rec["lora"] = lora_recover(lm.model, lm.tokenizer, s, progress=True,
                                      measure=lambda m: perplexity(m, windows, ev.batch_size)["ppl"])
        rec["ppl"] = rec["lora"]["ppl_after"]
        print(f"LoRA: perplexity {rec['lora']['ppl_before']:.3f} -> {rec['lora']['ppl_after']:.3f}")
    rec["wall_s"] = time.perf_counter() - t0
    write_record(args.json, rec)
    if args.save:
        print(f"model saved to {save_structured(lm, args.save, rec)}")
    return 0
