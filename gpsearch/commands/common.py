"""Options shared by several subcommands (model, data, calibration, evaluation)."""

from __future__ import annotations

import argparse

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.model.load import EMBEDDED


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=EMBEDDED,
                   help=f"'{EMBEDDED}' (embedded), a hub id, a local HF directory or a .gguf file")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/gpsearch "
                   "or $GPSEARCH_CACHE)")


def add_placement_args(p: argparse.ArgumentParser) -> None:
    """Models larger than one device (prune, compare; search has its own table of options)."""
    p.add_argument("--device-map", default=None,
                   help="spread the model over every visible GPU with accelerate: auto or "
                        "balanced (then --device is ignored; cpu/disk offload is refused)")
    p.add_argument("--offload", action="store_true",
                   help="keep the decoder blocks in host memory and move them to --device one "
                        "at a time (layer-by-layer paths: sequential features, Wanda, SparseGPT)")


def add_calib_args(p: argparse.ArgumentParser, nsamples: int = 128, seqlen: int = 256) -> None:
    p.add_argument("--data", default="wiki",
                   help="wiki (embedded), wikitext2, c4, or a local .txt/.jsonl file or folder")
    p.add_argument("--nsamples", type=int, default=nsamples, help="calibration samples")
    p.add_argument("--seqlen", type=int, default=seqlen,
                   help="tokens per calibration sample and per evaluation window")
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    p.add_argument("--batch-size", type=int, default=4, help="calibration / evaluation batch size")
    p.add_argument("--max-windows", type=int, default=None,
                   help="evaluate on at most this many windows (default: the whole split)")


def calib_from(args) -> CalibConfig:
    return CalibConfig(data=args.data, nsamples=args.nsamples, seqlen=args.seqlen,
                       seed=args.seed, batch_size=args.batch_size)


def eval_from(args, split: str = "test") -> EvalConfig:
    return EvalConfig(data=args.data, split=split, seqlen=args.seqlen,
                      max_windows=args.max_windows, batch_size=args.batch_size)


def add_zero_shot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-zero-shot", default=None, metavar="TASKS",
                   help="zero-shot accuracy through lm-eval on the pruned model in memory, "
                        "comma-separated: wiki_lastword (embedded, offline: last word of the "
                        "wiki TEST articles) or lm-eval tasks from the hub (boolq, rte, hellaswag, "
                        "winogrande, arc_easy, arc_challenge, openbookqa)")
    p.add_argument("--zero-shot-limit", type=int, default=None, metavar="N",
                   help="at most N examples per zero-shot task (default: all)")


def add_allocation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allocation", default=None,
                   help="layer-wise sparsity: uniform, owl (Outlier Weighed Layerwise, from the "
                        "metric's own scores; Wanda's for SparseGPT) or an allocation FILE.json "
                        "(e.g. written by gpsearch allocate); default: every linear at --sparsity")
    p.add_argument("--owl-m", type=float, default=DEFAULT_OWL_M,
                   help="OWL outlier threshold M: scores above M x the block's mean "
                        "(default %(default)g)")
    p.add_argument("--owl-lambda", type=float, default=DEFAULT_OWL_LAMBDA,
                   help="OWL: block sparsities within sparsity +- lambda (default %(default)g)")
