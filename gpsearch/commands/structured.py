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

from gpsearch.api import StructuredConfig
from gpsearch.commands.common import add_calib_args, add_model_args

D = StructuredConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=("shortgpt", "width", "slimgpt"))
    p.add_argument("--n-remove-layers", type=int, default=D.n_remove_layers,
                   help="shortgpt: layers to remove (default 25%% of them); width: also remove "
                        "this many lowest-Block-Influence layers (default 0)")
    p.add_argument("--pruning-ratio", type=float, default=D.pruning_ratio,
                   help="width/slimgpt: fraction of attention groups and MLP channels removed")
    p.add_argument("--importance", default=D.importance,
                   help="width: taylor (|W|*G), wanda (|W|*sqrt(X)) or any metric tree spec")
    p.add_argument("--ranking", default=D.ranking, choices=("global", "layer"),
                   help="width: rank units across all layers, or remove the ratio in each layer")
    p.add_argument("--max-samples", type=int, default=D.max_samples,
                   help="slimgpt: cap on the tokens feeding each layer's Hessian")
    p.add_argument("--ratio-schedule", default=D.ratio_schedule, choices=("uniform", "log"),
                   help="slimgpt: same ratio in every layer, or growing with depth (log)")
    p.add_argument("--rounds", type=int, default=D.rounds,
                   help="slimgpt: greedy batches for MLP channels")
    add_model_args(p)
    add_calib_args(p)
    p.add_argument("--lora", action="store_true",
                   help="then LoRA recovery (r 8, alpha 16, dropout 0.05)")
    p.add_argument("--lora-steps", type=int, default=D.lora_steps, help="LoRA steps per epoch")
    p.add_argument("--lora-lr", type=float, default=D.lora_lr)
    p.add_argument("--lora-batch-size", type=int, default=D.lora_batch_size)
    p.add_argument("--save", default=None, help="save the pruned model (HF directory) here")
    p.add_argument("--json", default=None, help="write the record to this file")


def config_from(args) -> StructuredConfig:
    return StructuredConfig(
        method=args.method, n_remove_layers=args.n_remove_layers,
        pruning_ratio=args.pruning_ratio, importance=args.importance, ranking=args.ranking,
        max_samples=args.max_samples, ratio_schedule=args.ratio_schedule, rounds=args.rounds,
        model=args.model, dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
        data=args.data, nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
        batch_size=args.batch_size, max_windows=args.max_windows, lora=args.lora,
        lora_steps=args.lora_steps, lora_lr=args.lora_lr, lora_batch_size=args.lora_batch_size,
        save=args.save, record=args.json)


def run(args) -> int:
    from gpsearch import api

    api.structured(config_from(args))  # prints as it goes; writes --json and --save
    return 0
