"""Benchmark: the bytes the evaluator holds per pruned parameter, by kind and place, for float32
and bfloat16 on the embedded model (tensor accounting, the peak transient of scoring + masking
from the CPU profiler's allocator events, and the process's peak RSS), plus:
- the cost per candidate of computing |W| per layer on the fly instead of caching it;
- the share of mask entries that flip when G is stored in bfloat16 / float16 instead of float32;
- that restore is bit-exact;
- the extrapolation to LLaMA-2 7B / 13B / 70B (accelerator GB for prune, search, SparseGPT).
Each dtype runs in its own subprocess (clean peak RSS). Writes bench/bench_memory.json.

    .venv/bin/python scripts/bench_memory.py [--nsamples 16] [--out bench/bench_memory.json]

Byte counts do not depend on the number of calibration samples (only G's values do), so the
default uses 16 samples to keep the gradient pass short; the flip measurement uses the same G.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TREES = {"wanda": "mul(W, sqrt(X))", "gblm": "add(mul(W, sqrt(X)), mul(W, G))",
         "pruner_zero": "mul(abs(mul(W, W)), mms(G))",
         "default_search_best": "add(mul(W, sqrt(add(X, X))), zsn(mul(mms(W), G)))",
         "w_times_g": "mul(W, G)"}
GPUS_GB = (24, 48, 80, 141)
BF16_NSAMPLES = 2


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(dtype: str, nsamples: int, cache: str) -> dict:
    import torch

    if dtype != "float32":  # byte counts do not depend on it; a bf16 gradient pass is slow on CPU
        nsamples = min(nsamples, BF16_NSAMPLES)

    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.model.memory import accounting, before_layout, peak_transient
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import make_mask, parse_pattern
    from gpsearch.tree import EXTENDED, check_score, evaluate, parse_prefix

    calib = CalibConfig(data="wiki", nsamples=nsamples, seqlen=256)
    ev = EvalConfig(data="wiki", split="validation", seqlen=256, max_windows=8)
    t = time.perf_counter()
    e = Evaluator("smollm2-135m", calib, dtype=dtype, cache_dir=cache)
    load_s = time.perf_counter() - t
    rss_loaded = rss_now_mb()
    t = time.perf_counter()
    for kind in ("X", "G"):
        e.features.get(kind)
    features_s = time.perf_counter() - t
    windows = e.windows(ev)
    acc = accounting(e, n_tokens=windows.numel())
    wbytes = next(iter(e.linears.values())).weight.element_size()
    pattern = parse_pattern("unstructured", 0.5)
    snapshot = {n: lin.weight.detach().clone() for n, lin in e.linears.items()}
    largest = max(lin.weight.numel() for lin in e.linears.values())
    peaks = {}
    for name, expr in TREES.items():
        tree = parse_prefix(expr)
        peak, secs = peak_transient(lambda: e.prune(tree, 0.5, pattern))  # noqa: B023 - called at once
        e.restore()
        peaks[name] = {"peak_bytes": peak, "per_param_of_largest_linear": peak / largest,
                       "per_pruned_param": peak / acc["pruned_params"], "profiled_s": secs}
    # the search's path: whole-model masks first (fingerprint), then applied
    tree, out_search = parse_prefix(TREES["default_search_best"]), None
    if hasattr(e, "compute_masks"):
        peak, secs = peak_transient(lambda: e.apply_masks(e.compute_masks(tree, 0.5, pattern)))
        e.restore()
        out_search = {
            "tree": TREES["default_search_best"], "peak_bytes": peak,
            "per_pruned_param": peak / acc["pruned_params"], "profiled_s": secs}
    bits = torch.int32 if wbytes == 4 else torch.int16
    exact = all(torch.equal(snapshot[n].view(bits), lin.weight.detach().view(bits))
                for n, lin in e.linears.items())
    out = {"dtype": dtype, "nsamples": nsamples, "search_path_transient": out_search,
           "load_s": load_s, "features_s": features_s, "accounting": acc,
           "before": before_layout(acc, wbytes), "weight_bytes_per_param": wbytes,
           "g_dtype": str(next(iter(e.features.get("G").values())).dtype),
           "largest_linear_params": largest, "transient": peaks,
           "restore_bit_exact_after_5_trees": exact, "rss_after_load_mb": rss_loaded}

    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dtype != "float32":
        return out
    # |W| on the fly vs a cache, per candidate (dense prune of the whole model)
    tree = parse_prefix(TREES["wanda"])

    def prune_s(reps=3):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            e.prune(tree, 0.5, pattern)
            times.append(time.perf_counter() - t0)
            e.restore()
        return statistics.median(times)

    e.prune(tree, 0.5, pattern)  # warm-up
    e.restore()
    fly = prune_s()
    t0 = time.perf_counter()
    cache_abs = {n: e.dense[n].abs().float() for n in e.linears}
    build = time.perf_counter() - t0
    plain = e.abs_weight
    e.abs_weight = cache_abs.__getitem__
    cached = prune_s()
    e.abs_weight = plain
    del cache_abs
    t0 = time.perf_counter()
    for n in e.linears:
        e.abs_weight(n)
    abs_all = time.perf_counter() - t0
    out["abs_w"] = {"tree": TREES["wanda"], "prune_s_on_the_fly": fly, "prune_s_cached": cached,
                    "extra_s_per_candidate": fly - cached, "abs_all_layers_s": abs_all,
                    "cache_build_s": build}

    if True:  # float32 only: flips of the masks when G is stored in 16 bits
        G = e.features.get("G")
        X = e.features.get("X")
        flips = {}
        for name, expr in TREES.items():
            t = parse_prefix(expr)
            if "G" not in expr:
                continue
            row = {}
            for low in ("bfloat16", "float16"):
                lowdt = getattr(torch, low)
                changed = total = 0
                for n in e.linears:
                    terms = {"W": e.abs_weight(n), "X": X[n]}
                    ref = make_mask(check_score(evaluate(t, {**terms, "G": G[n]}, EXTENDED),
                                                terms["W"].shape), 0.5, pattern)
                    got = make_mask(check_score(evaluate(t, {**terms, "G": G[n].to(lowdt)},
                                                         EXTENDED), terms["W"].shape), 0.5, pattern)
                    changed += int((ref != got).sum())
                    total += ref.numel()
                row[low] = {"flipped_entries": changed, "share": changed / total}
            flips[name] = row
        out["g_precision_mask_flips"] = flips
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def extrapolate(results: dict) -> dict:
    from gpsearch.model.memory import SHAPES, needs

    bf = results["bfloat16"]
    per = max(p["per_param_of_largest_linear"] for p in bf["transient"].values()
              if "per_param_of_largest_linear" in p)
    table = {}
    for name, shape in SHAPES.items():
        n = needs(shape, wbytes=2, g_bytes=2, per_param_transient=per)
        gb = {k: v / 2 ** 30 for k, v in n.items() if k != "pruned_params"}
        fits = {}
        for what in ("prune", "search", "sparsegpt_offload", "sparsegpt_resident"):
            need = gb[what]
            fits[what] = {str(g): need <= 0.9 * g for g in GPUS_GB}  # 10% for context/fragments
            fits[what]["gpus_of_80"] = int(-(-need // (0.9 * 80)))
        table[name] = {"pruned_params": n["pruned_params"], "gib": gb, "fits": fits}
    return {"assumptions": {
        "dtype": "bfloat16 weights, G bfloat16 on the accelerator; X float32 and the restore "
                 "copy in host memory",
        "transient_per_param_of_largest_linear": per,
        "forward": "batch 4 x seqlen 256 perplexity windows (the search's fitness)",
        "kl_reference": "2048 validation tokens x top-512 (logit float32 + index int32)",
        "sparsegpt": "128 x 2048 calibration tokens, activations in bf16, float32 Hessians",
        "usable_fraction_of_gpu": 0.9, "gib": "2**30 bytes; a GPU's 'GB' taken as GiB"},
        "models": table}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--cache", default=None, help="feature cache (default: a bench folder)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench/bench_memory.json")
    a = ap.parse_args()
    cache = a.cache or str(Path.home() / ".cache" / "gpsearch")
    if a.one:
        print("RESULT " + json.dumps(one(a.one, a.nsamples, cache)))
        return
    results = {}
    for dtype in ("float32", "bfloat16"):
        proc = subprocess.run([sys.executable, __file__, "--one", dtype, "--nsamples",
                               str(a.nsamples), "--cache", cache], capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"{dtype} run failed:\n{proc.stderr[-3000:]}")
        results[dtype] = json.loads(line[0][7:])
        r = results[dtype]
        print(f"{dtype}: accelerator "
              f"{r['accounting']['per_place']['accelerator']['per_param']:.4f} "
              f"B/param (before: {r['before']['per_param']:.4f}), host "
              f"{r['accounting']['per_place'].get('host', {}).get('per_param', 0):.4f}; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB; restore bit-exact "
              f"{r['restore_bit_exact_after_5_trees']}")
    import torch

    from gpsearch.io import code_version

    out = {"model": "smollm2-135m", **code_version(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.machine(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "nsamples": a.nsamples,
           "results": results, "extrapolation": extrapolate(results),
           "target": "accelerator-resident bytes per pruned parameter for bf16 <= 4"}
    for name, m in out["extrapolation"]["models"].items():
        g = m["gib"]
        print(f"{name}: prune {g['prune']:.1f} GiB, search {g['search']:.1f} GiB, SparseGPT "
              f"offload {g['sparsegpt_offload']:.1f} / resident {g['sparsegpt_resident']:.1f} GiB")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
