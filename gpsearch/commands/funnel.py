"""The funnel over a finished search run directory: its top trees (hall_of_fame.csv), its best
seeds and the strongest hand trees (Wanda, GBLM, RIA with sqrt) re-scored on the VALIDATION split
under a declared, wider set of conditions that stand in for another model (other sparsities, 2:4,
another calibration size and seed, held-apart text: funnels/default.json). A searched tree is
reported only if it beats its seed and the strongest hand tree by more than each condition's
noise under a majority of the conditions; otherwise the simpler tree is, and the output says so.
Writes funnel.json, funnel.md and funnel_conditions.json into the run directory (with the
commit). (The Python function: ``gpsearch.funnel``.)"""

from __future__ import annotations

import argparse

from gpsearch.api import FunnelConfig

D = FunnelConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished search run directory")
    p.add_argument("--conditions", default=D.conditions, metavar="FILE",
                   help="funnel file: a name in funnels/ or a .json path (default "
                        f"{D.conditions}: funnels/{D.conditions}.json)")
    p.add_argument("--top", type=int, default=D.top, metavar="N",
                   help="hall-of-fame trees to re-score, by the last stage (default %(default)s)")
    p.add_argument("--seeds", type=int, default=D.seeds, metavar="K",
                   help="the run's best seeds by first-stage fitness (default %(default)s; each "
                        "top tree's own seed is added as well)")
    p.add_argument("--max-windows", type=int, default=D.max_windows, metavar="N",
                   help="validation windows per condition (default: the run's last-stage "
                        "windows; the held-apart text is the last N windows of the split)")
    p.add_argument("--device", default=D.device, help="default: the run's device")
    p.add_argument("--cache-dir", default=D.cache_dir,
                   help="feature cache (default: the run's, else ~/.cache/gpsearch or "
                        "$GPSEARCH_CACHE)")


def run(args) -> int:
    from gpsearch import api

    rec = api.funnel(FunnelConfig(run_dir=args.run_dir, conditions=args.conditions,
                                  top=args.top, seeds=args.seeds, max_windows=args.max_windows,
                                  device=args.device, cache_dir=args.cache_dir))
    print(rec["markdown"])
    print(f"written to {args.run_dir}/funnel.md and funnel.json")
    return 0
