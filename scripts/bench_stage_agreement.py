"""Does the first stage rank trees as the last stage does? Rank agreement on committed runs.

For every committed search run with staged fitness (log.jsonl records carry each stage's score),
the trees that reached the last stage are ranked by their first-stage score and by their
last-stage score (``gpsearch.engine.agreement``): Spearman over all of them and over the 10 best
by the last stage, where the last stage's best tree ranks at the first stage, and where the hall
of fame's head stands at the first stage among every evaluated tree. No model is
loaded: the numbers are in the logs. Beside it, bench/bench_fidelity.json has each stage budget
against the TEST split. Writes bench/stage_agreement.json with the commit.

    .venv/bin/python scripts/bench_stage_agreement.py
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, relative_path, write_json  # noqa: E402

RUNS = ("bench/default_search", "bench/default_search_single", "bench/search_robust_pick",
        "bench/ablation_no_immigrants", "bench/search_24", "bench/search_fitness_nsamples32")


def agreement(run: Path) -> dict | None:
    from gpsearch.engine.agreement import stage_agreement

    records: dict[str, dict] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("hit") is None and r.get("stages") and r["simplified"] not in records:
            records[r["simplified"]] = r
    with open(run / "hall_of_fame.csv", newline="") as f:
        hof = list(csv.DictReader(f))
    return stage_agreement(records, hof[0]["expression"] if hof else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "stage_agreement.json"))
    args = ap.parse_args()
    out = {"what": __doc__.split("\n\n")[0], **code_version(), "runs": {}}
    for name in RUNS:
        run = ROOT / name
        if not (run / "log.jsonl").is_file():
            continue
        a = agreement(run)
        if a is None:
            continue
        out["runs"][relative_path(run)] = a
        print(name, json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in a.items()}), flush=True)
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
