"""The ``gpsearch`` command: a thin argparse layer over functions callable from Python.

Every subcommand lives in ``gpsearch/commands/<name>.py`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. A ``UserError`` anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gpsearch.errors import UserError

COMMANDS = {
    "prune": "prune a model with a metric tree and measure its perplexity",
    "search": "search for a pruning metric by genetic programming (resumable run directory)",
    "tiers": "progressive three-tier block pruning (dense / 2:4 / top-k) driven by a CSV schedule",
    "structured": "structured baselines: ShortGPT, width pruning (H-GSP family), SlimGPT",
    "lora": "LoRA recovery fine-tuning of a pruned model; the merge keeps every zero",
    "compare": "compare pruning methods and metric trees on one calibration config (test split)",
    "iterative": "iterative pruning with masked fine-tuning, round by round (resumable)",
    "robustness": "a tree's fitness under rescaled terminals, other calibrations and patterns",
    "funnel": "re-score a finished search's best trees, seeds and hand trees under wider "
              "conditions; report a tree only if it leads beyond noise",
    "allocate": "search a layer-wise sparsity allocation for a fixed metric (resumable)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpsearch", description="Discover pruning metrics for "
                                     "LLMs by genetic programming. Sparsity always means the "
                                     "fraction of weights set to zero (0.9 = 90% zeros).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        mod = importlib.import_module(f"gpsearch.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except UserError as e:
        print(f"gpsearch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the machine, not the input: a full disk, a lost mount (exit 1)
        where = f" ({e.filename})" if e.filename else ""
        print(f"gpsearch {args.command}: error: {e.strerror or e}{where}; what was written before "
              "is intact (a search resumes with --resume RUN_DIR)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
