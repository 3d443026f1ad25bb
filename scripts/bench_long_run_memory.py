"""Memory over a long run: the resident set size of a search process (and of its child
processes: Ray workers) against the number of evaluations it has done.

Runs COMMAND (by default the search-efficiency benchmark's gp and random arms, 150 first-stage
evaluations each, in ONE process: the serial backend, so the driver is also the worker),
samples VmRSS / VmHWM of the process tree from /proc every --every seconds, and reads the
evaluation count from the command's "evaluated N" progress lines. Writes the samples and a
summary (RSS after warm-up, at the end, the relative growth per 100 evaluations) to
bench/long_run_memory.json with the commit.

    .venv/bin/python scripts/bench_long_run_memory.py
    .venv/bin/python scripts/bench_long_run_memory.py --every 5 -- \
        .venv/bin/gpsearch search --workers 2
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, write_json  # noqa: E402

DEFAULT = [sys.executable, "scripts/bench_search_efficiency.py", "--arms", "gp,random",
           "--seeds", "0", "--out", "runs/long_run_memory_efficiency.json"]
EVALUATED = re.compile(r"evaluated (\d+)")


def tree_rss(pid: int) -> dict[int, tuple[int, int]]:
    """pid -> (VmRSS kB, VmHWM kB) of pid and every descendant (Linux /proc)."""
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        vals = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+)", status, re.M))
        if vals:
            out[p] = (int(vals.get("VmRSS", 0)), int(vals.get("VmHWM", 0)))
        todo += [int(k) for k in kids]
    return out


def summarise(samples: list[dict], warmup: int) -> dict:
    """RSS of the main process after ``warmup`` evaluations and at the end; growth per 100.
    The evaluation count restarts with each arm of the default command: ``total`` counts them
    cumulatively."""
    after = [s for s in samples if s["total_evaluations"] >= warmup]
    if len(after) < 2:
        return {"note": f"fewer than 2 samples after {warmup} evaluations"}
    a, b = after[0], after[-1]
    span = b["total_evaluations"] - a["total_evaluations"]
    return {"warmup_evaluations": warmup, "rss_after_warmup_mb": a["rss_mb"],
            "rss_end_mb": b["rss_mb"], "evaluations_after_warmup": span,
            "growth_pct": round(100 * (b["rss_mb"] / a["rss_mb"] - 1), 2),
            "growth_pct_per_100_evaluations": (round(100 * (b["rss_mb"] / a["rss_mb"] - 1)
                                                     * 100 / span, 3) if span else None),
            "peak_rss_mb": max(s["hwm_mb"] for s in samples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    ap.add_argument("--warmup", type=int, default=50, help="evaluations before the baseline")
    ap.add_argument("--out", default=str(ROOT / "bench" / "long_run_memory.json"))
    ap.add_argument("command", nargs="*", help="the command to watch (default: see above)")
    args = ap.parse_args()
    cmd = args.command or DEFAULT
    version = code_version()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    state = {"evaluated": 0, "total": 0, "last": 0}

    def read():
        for line in proc.stdout:
            m = EVALUATED.search(line)
            if m:
                n = int(m.group(1))
                state["total"] += n - state["last"] if n >= state["last"] else n
                state["evaluated"] = state["last"] = n
            print(line, end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples, t0 = [], time.monotonic()
    while proc.poll() is None:
        rss = tree_rss(proc.pid)
        if proc.pid in rss:
            samples.append({"seconds": round(time.monotonic() - t0, 1),
                            "evaluations": state["evaluated"],
                            "total_evaluations": state["total"],
                            "rss_mb": round(rss[proc.pid][0] / 1024, 1),
                            "hwm_mb": round(rss[proc.pid][1] / 1024, 1),
                            "children_rss_mb": round(sum(v[0] for p, v in rss.items()
                                                         if p != proc.pid) / 1024, 1)})
        time.sleep(args.every)
    reader.join(5)
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "command": cmd, **version,
                          "returncode": proc.returncode, "every_s": args.every,
                          "summary": summarise(samples, args.warmup), "samples": samples})
    print(summarise(samples, args.warmup))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
