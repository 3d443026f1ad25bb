"""Does the funnel's pick transfer better than the stage-only pick? Judged on held-apart conditions.

For every search run directory given (by default three runs at the README's settings, seeds 0-2):
the funnel (``gpsearch.jobs.funnel.run_funnel`` with a funnel file, ``funnels/default.json``
unless told) picks a tree on the VALIDATION split under its conditions; the stage-only pick is
what the search without the funnel reports (its best_tree.json: the hall of fame's head, or the
winner of its constant tuning). Both, with the funnel
file's hand trees, are then scored on the TEST split under JUDGE conditions that neither the
search nor the funnel used (default: the run's own condition, sparsity 0.65, the 4:8 pattern),
``--test-windows`` windows each. A hand tree's TEST score is measured once and shared between
runs of the same model and calibration.

Per run and judge condition: each pick's TEST PPL, its margin over the best hand tree under that
condition (1 - PPL / best hand PPL), and whether the funnel's pick beats the stage-only pick
(identical picks count as ties). Writes bench/funnel.json with the commit; every funnel also
writes funnel.json / funnel.md into its run directory; a run directory that already has a
funnel.json from the same funnel file (``search --funnel``) is judged on it (``--refunnel``
runs it again). ``--keep`` keeps the runs an earlier
output measured with the same funnel file and judge (each entry records its own commit).

    .venv/bin/python scripts/bench_funnel.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, relative_path, write_json  # noqa: E402

JUDGE = ("baseline", "sparsity=0.65", "pattern=4:8")


def judge_run(evaluator, run, picks: dict, judge: list[str], windows: int,
              cache: dict) -> dict:
    """TEST PPL of every tree in ``picks`` ({name: expr}) under every judge condition."""
    from gpsearch.config import EvalConfig
    from gpsearch.engine.conditions import parse_condition
    from gpsearch.jobs.robustness import score_condition
    from gpsearch.tree import EXTENDED, parse_prefix

    ev = EvalConfig(data=run.ev.data, split="test", seqlen=run.ev.seqlen, max_windows=windows,
                    batch_size=run.ev.batch_size)
    base = SimpleNamespace(sparsity=run.sparsity, pattern=run.pattern, scope=run.scope)
    scored = cache.setdefault(("masks", run.model, run.calib, ev), {})
    out: dict = {}
    for label in judge:
        c = parse_condition(label)
        out[label] = {}
        for name, expr in picks.items():
            key = (run.model, run.calib, ev, run.sparsity, run.pattern, run.scope, label, expr)
            if key not in cache:
                t = time.perf_counter()
                _, cache[key] = score_condition(evaluator, parse_prefix(expr, EXTENDED), c, base,
                                                ev, scored)
                print(f"  TEST {label}: {name} {cache[key]:.4f} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
            out[label][name] = cache[key]
    return out


def compare(test: dict, hand: list[str]) -> dict:
    """Per judge condition: margins of both picks over the best hand tree, and who wins."""
    rows = {}
    for label, ppl in test.items():
        best_hand = min(hand, key=lambda h: ppl[h])
        m = {k: 1 - ppl[k] / ppl[best_hand] for k in ("funnel_pick", "stage_pick")}
        diff = 1 - ppl["funnel_pick"] / ppl["stage_pick"]
        rows[label] = {"best_hand": best_hand, "margin_over_best_hand": m,
                       "funnel_vs_stage": diff,
                       "outcome": "tie" if diff == 0 else "funnel" if diff > 0 else "stage"}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="search run directories")
    ap.add_argument("--conditions", default="default", help="funnel file (funnels/NAME.json)")
    ap.add_argument("--judge", default=",".join(JUDGE),
                    help="comma-separated TEST conditions (default: %(default)s)")
    ap.add_argument("--test-windows", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "bench" / "funnel.json"))
    ap.add_argument("--refunnel", action="store_true",
                    help="run the funnel again even where the run directory has its funnel.json")
    ap.add_argument("--keep", action="store_true",
                    help="keep the runs --out already holds for the same funnel file and judge")
    args = ap.parse_args()
    from gpsearch.jobs.funnel import FunnelConfig, check, run_funnel
    from gpsearch.pruning.evaluator import Evaluator

    judge = [s.strip() for s in args.judge.split(",") if s.strip()]
    out = {"what": __doc__.split("\n\n")[0], **code_version(), "conditions_file": args.conditions,
           "judge": {"split": "test", "windows": args.test_windows, "conditions": judge},
           "runs": {}}
    evaluator, cache = None, {}
    done = _earlier(args.out, args.conditions, out["judge"]) if args.keep else {}
    for d in args.runs:
        if relative_path(d) in done:  # measured before (its own commit is in the entry)
            print(f"== {d}: kept from {args.out}", flush=True)
            out["runs"][relative_path(d)] = done[relative_path(d)]
            continue
        cfg = FunnelConfig(run_dir=d, conditions=args.conditions)
        spec, run, _, _ = check(cfg)
        if evaluator is None or (evaluator.lm.spec, evaluator.calib) != (run.model, run.calib):
            evaluator = Evaluator(run.model, run.calib, run.dtype, run.device, run.cache_dir)
        rec = None if args.refunnel else _funnel_of(run.path, spec.path)
        if rec is not None:  # the search ran it (--funnel) or an earlier bench did
            print(f"== {d}: its funnel.json (commit {str(rec.get('commit'))[:12]})", flush=True)
            t_funnel = rec.get("seconds")
        else:
            print(f"== {d}: funnel", flush=True)
            t0 = time.perf_counter()
            rec = run_funnel(cfg, evaluator=evaluator)
            t_funnel = time.perf_counter() - t0
        by_name = {f["name"]: f["expr"] for f in rec["finalists"]}
        hand = [f["name"] for f in rec["finalists"] if f.get("kind") == "hand"]
        picks = {h: by_name[h] for h in hand}
        picks["stage_pick"], picks["funnel_pick"] = reported(run), rec["reported"]["expr"]
        print(f"== {d}: judge (stage pick {picks['stage_pick']}, funnel pick "
              f"{picks['funnel_pick']})", flush=True)
        test = judge_run(evaluator, run, picks, judge, args.test_windows, cache)
        out["runs"][relative_path(d)] = {
            **code_version(), "seed": run.config.get("search", {}).get("seed"),
            "search_commit": run.config.get("commit"),
            "stage_pick": picks["stage_pick"], "funnel_pick": picks["funnel_pick"],
            "funnel_pick_kind": rec["reported"].get("kind"), "verdict": rec.get("verdict"),
            "funnel_commit": rec.get("commit"), "funnel_seconds": t_funnel,
            "hand_trees": {h: picks[h] for h in hand},
            "test_ppl": test, "judged": compare(test, hand)}
        write_json(args.out, summarise(out))  # nothing lost if a later run fails
    write_json(args.out, summarise(out))
    s = out["summary"]
    print(f"funnel pick vs stage-only pick over {s['cases']} run x condition cases: funnel "
          f"better {s['funnel']}, stage better {s['stage']}, same tree {s['tie']}", flush=True)
    return 0


def reported(run) -> str:
    """What the search reports without the funnel: its best_tree.json (after constant tuning,
    a final stage or a robust pick, when those ran), else the hall of fame's head."""
    from gpsearch.tree import load_tree, to_prefix

    path = run.path / "best_tree.json"
    return to_prefix(load_tree(str(path))) if path.is_file() else run.hof[0]["expr"]


def _funnel_of(run_path: Path, spec_path: Path) -> dict | None:
    """The run directory's funnel.json when it was made with this funnel file (checked as data:
    the fields this script reads), else None."""
    import json

    try:
        rec = json.loads((run_path / "funnel.json").read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(rec, dict) and rec.get("conditions_file") == relative_path(spec_path)
          and isinstance(rec.get("reported"), dict) and isinstance(rec["reported"].get("expr"), str)
          and isinstance(rec.get("finalists"), list)
          and all(isinstance(f, dict) and isinstance(f.get("name"), str)
                  and isinstance(f.get("expr"), str) for f in rec["finalists"]))
    return rec if ok else None


def _earlier(path: str, conditions: str, judge: dict) -> dict:
    """The runs an earlier bench/funnel.json measured with the same funnel file and judge."""
    import json

    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    same = old.get("conditions_file") == conditions and old.get("judge") == judge
    return old.get("runs", {}) if same and isinstance(old.get("runs"), dict) else {}


def summarise(out: dict) -> dict:
    cases = [j for r in out["runs"].values() for j in r["judged"].values()]
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    out["summary"] = {
        "cases": len(cases), **{k: sum(c["outcome"] == k for c in cases)
                                for k in ("funnel", "stage", "tie")},
        "mean_funnel_vs_stage": mean([c["funnel_vs_stage"] for c in cases]),
        "mean_margin_over_best_hand": {
            k: mean([c["margin_over_best_hand"][k] for c in cases])
            for k in ("funnel_pick", "stage_pick")},
        "how": "funnel_vs_stage = 1 - TEST PPL of the funnel's pick / that of the stage-only "
               "pick (positive: the funnel's pick is better); margins = 1 - PPL / PPL of the best "
               "hand tree under the same condition"}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
