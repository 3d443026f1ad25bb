"""Prune a model with one metric tree (a JSON file, a name in trees/, or a prefix expression
such as 'mul(W, sqrt(X))'), then print its TEST-split perplexity, the achieved sparsity and the
configuration; optionally zero-shot accuracy (lm-eval) and a saved model (a dense HF directory
or the compressed-tensors sparse format). Sparsity is the fraction of weights set to zero.
(The Python function: ``gpsearch.prune``.)"""

from __future__ import annotations

import argparse

from gpsearch.api import PruneConfig
from gpsearch.commands.common import (
    add_allocation_args,
    add_calib_args,
    add_model_args,
    add_placement_args,
    add_zero_shot_args,
    calib_from,
    eval_from,
)
from gpsearch.jobs.record import write_record
from gpsearch.model.export import SAVE_FORMATS

D = PruneConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", required=True,
                   help="metric: trees/NAME.json, a bare name such as wanda, or a prefix "
                        "expression")
    p.add_argument("--sparsity", type=float, default=D.sparsity,
                   help="fraction of weights set to zero")
    p.add_argument("--pattern", default=D.pattern, help="unstructured, 2:4, 4:8 (N:M)")
    p.add_argument("--scope", default=D.scope, choices=("row", "matrix"),
                   help="unstructured comparison group: each output row (Wanda) or whole matrix")
    p.add_argument("--features", default=D.features, choices=("dense", "sequential"),
                   help="dense: statistics from the dense model once (fast); sequential: block by "
                        "block through the already pruned blocks (Wanda/Pruner-Zero faithful)")
    p.add_argument("--update", default="none", choices=("none", "recon", "sparsegpt"),
                   help="weight update: none (mask only); recon (the tree's mask, then damped "
                        "least-squares reconstruction of the kept weights, block-sequential); "
                        "sparsegpt (the tree ranks SparseGPT's adaptive mask selection, OBS "
                        "updates; unstructured per mask block, so --scope does not apply)")
    p.add_argument("--recon-max-iter", type=int, default=20,
                   help="--update recon: conjugate-gradient iterations per linear")
    add_allocation_args(p)
    add_model_args(p)
    add_placement_args(p)
    add_calib_args(p)
    p.add_argument("--dense-ppl", action="store_true", help="also measure the dense perplexity")
    p.add_argument("--per-layer", action="store_true", help="print each linear's sparsity")
    p.add_argument("--json", default=None, help="write the full result record to this file")
    p.add_argument("--save", default=None, help="save the pruned model (a directory) here")
    p.add_argument("--save-format", default=D.save_format, choices=SAVE_FORMATS,
                   help="hf: a dense from_pretrained directory; compressed-tensors: the sparse "
                        "format vLLM reads (sparse-bitmask, or sparse-24-bitmask for 2:4)")
    add_zero_shot_args(p)


def config_from(args) -> PruneConfig:
    return PruneConfig(tree=args.tree, sparsity=args.sparsity, pattern=args.pattern,
                       scope=args.scope, features=args.features, model=args.model,
                       calib=calib_from(args), evaluation=eval_from(args, "test"),
                       dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
                       dense_ppl=args.dense_ppl, per_layer=args.per_layer, save=args.save,
                       save_format=args.save_format, zero_shot=args.eval_zero_shot,
                       zero_shot_limit=args.zero_shot_limit, update=args.update,
                       recon_max_iter=args.recon_max_iter, device_map=args.device_map,
                       offload=args.offload, allocation=args.allocation,
                       owl_m=args.owl_m, owl_lambda=args.owl_lambda)


def run(args) -> int:
    from gpsearch.api import prune

    rec = prune(config_from(args))
    e = rec["evaluation"]
    print(f"evaluation: {e['data']} {e['split']} split, seqlen {e['seqlen']}, "
          f"{e['windows']} windows, {e['tokens']} tokens")
    if "dense_ppl" in rec:
        print(f"dense perplexity: {rec['dense_ppl']:.3f}")
    print(f"pruned perplexity: {rec['ppl']:.3f}")
    print(f"achieved sparsity: {rec['achieved_sparsity']:.4f} over {rec['n_pruned_linears']} "
          f"linears ({', '.join(rec['pruned_modules'])} in every block)")
    for name, s in rec.get("per_layer", {}).items():
        print(f"  {name:32s} {100 * s:6.2f}% zeros")
    if "block_sparsity" in rec:
        print("block sparsity: " + " ".join(f"{b:.3f}" for b in rec["block_sparsity"]))
    write_record(args.json, rec)
    if args.json:
        from gpsearch.allocation.apply import plot_next_to

        png = plot_next_to(rec, args.json)
        if png:
            print(f"allocation plot written to {png}")
    if "saved" in rec:
        s = rec["saved"]
        print(f"pruned model saved to {s['path']} ({s['save_format']}"
              f"{', ' + s['compression_format'] if 'compression_format' in s else ''}; weights "
              f"{s['weights_bytes'] / 2**20:.1f} MiB)")
    return 0
