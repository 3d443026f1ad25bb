"""SparseGPT and Wanda at several commits in ONE environment: does the code move them?

For each commit: a temporary git worktree, and from it (its own gpsearch on PYTHONPATH, this
checkout's venv) ``gpsearch compare --methods sparsegpt,wanda --pattern unstructured,2:4
--sparsity 0.5 --nsamples 16 --max-windows 8`` with one thread; the rows of every commit side by
side. Issue 27: SparseGPT read 30.00 test PPL on 2026-11-23 (bench/compare_embedded) and 30.34
at 1f593f4 (bench/weight_update): if the commits agree here, the code is not the cause. Writes
bench/sparsegpt_commits.json with the commit it ran from.

    .venv/bin/python scripts/bench_sparsegpt_commits.py --commits 65c495a,1f593f4,HEAD
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, write_json  # noqa: E402

ARGS = ["compare", "--methods", "sparsegpt,wanda", "--pattern", "unstructured,2:4",
        "--sparsity", "0.5", "--nsamples", "16", "--max-windows", "8"]


def at_commit(commit: str, work: Path) -> tuple[str, dict]:
    full = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = work / full[:12]
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), full], cwd=ROOT,
                   capture_output=True, check=True)
    try:
        out = work / f"out-{full[:12]}"
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "gpsearch.cli", *ARGS, "--out", str(out)],
                       cwd=tree, env=env, check=True)
        res = json.loads((out / "results.json").read_text())
        rows = res.get("rows") or res.get("results")
        return full, {f"{r['method']} {r['pattern']}": r["ppl"] for r in rows}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", default="65c495a,1f593f4,HEAD")
    ap.add_argument("--out", default=str(ROOT / "bench" / "sparsegpt_commits.json"))
    args = ap.parse_args()
    version = code_version()
    with tempfile.TemporaryDirectory(prefix="sgpt") as tmp:
        results = dict(at_commit(c, Path(tmp)) for c in args.commits.split(","))
    first = next(iter(results.values()))
    same = all(r == first for r in results.values())
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "command": ARGS, **version,
                          "identical": same, "commits": results})
    print(json.dumps(results, indent=1), "\nidentical at every commit:", same)
    return 0


if __name__ == "__main__":
    sys.exit(main())
