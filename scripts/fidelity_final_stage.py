"""What a final stage would have chosen (``gpsearch search --final-trees N --final-windows W``),
from a finished ``bench_fidelity.py`` output and the search run its trees came from: the run's
hall of fame is ranked on its last stage; for each N, the first N of it are re-ranked by the
fidelity bench's fitness on all of its validation windows, and the TEST perplexity (the longest
measured) of each pick is reported beside the last stage's pick, for a final stage scored by
KL and by PPL. Pure post-processing: no model.

    .venv/bin/python scripts/fidelity_final_stage.py bench/bench_fidelity.json RUN_DIR \
        [--out bench/fidelity_final_stage.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import code_version, relative_path  # noqa: E402


def picks(hof: list[str], rows: dict, field: str, sizes=(2, 3, 4, 6, 8, 10)) -> list[dict]:
    """For each N: the last stage's pick (hof[0]) and the pick by ``field`` among hof[:N]."""
    test = lambda e: rows[e].get("test_ppl_long", rows[e]["test_ppl"])  # noqa: E731
    known = [e for e in hof if e in rows]
    out = []
    for n in sizes:
        if n > len(known):
            break
        chosen = min(known[:n], key=lambda e: rows[e][field])
        out.append({"trees": n, "pick": chosen, "pick_test_ppl": test(chosen),
                    "last_stage_pick": known[0], "last_stage_pick_test_ppl": test(known[0]),
                    "best_of_n_test_ppl": min(test(e) for e in known[:n])})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fidelity", help="bench_fidelity.json")
    ap.add_argument("run", help="the search directory its trees came from (checkpoint.json)")
    ap.add_argument("--out", default="bench/fidelity_final_stage.json")
    args = ap.parse_args()
    fid = json.loads(Path(args.fidelity).read_text())
    hof = [h["expr"] for h in json.loads((Path(args.run) / "checkpoint.json").read_text())["hof"]]
    run_commit = json.loads((Path(args.run) / "config.json").read_text()).get("commit")
    rows = {r["expr"]: r for r in fid["rows"]}
    tables = {}
    for kind, field in (("kl", "val_kl_full"), ("ppl", "val_ppl_full")):
        tables[kind] = picks(hof, rows, field)
        for t in tables[kind]:
            print(f"{kind} N={t['trees']:2d}: final stage picks test {t['pick_test_ppl']:.3f} "
                  f"(last stage's pick {t['last_stage_pick_test_ppl']:.3f}, best of the N "
                  f"{t['best_of_n_test_ppl']:.3f})  {t['pick']}")
    out = {"bench": "fidelity_final_stage", **code_version(),
           "fidelity": relative_path(args.fidelity), "fidelity_commit": fid.get("commit"),
           "run": relative_path(args.run), "run_commit": run_commit,
           "final_windows": fid["val_windows"],
           "test_windows": fid.get("best10_test_windows") or fid["test_windows"],
           "hall_of_fame": hof, "tables": tables}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
