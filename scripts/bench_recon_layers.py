"""Benchmark: what least-squares reconstruction buys per layer on the embedded model.

For the given decoder blocks (inputs from the DENSE model, calibration 128 x 256), every linear
gets Wanda's 50% mask (per row, X = diag(H) / 2 = scaler_row) and then: no update, CG
reconstruction with 5 / 20 / 50 iterations, and the exact Cholesky solve. Prints and writes, per
linear, the output error tr(dW H dW^T) relative to the mask-only error, the share of the
exact solve's reduction that CG leaves unrealised, and the solver seconds; with the commit.

    .venv/bin/python scripts/bench_recon_layers.py [--blocks 0 10]
        [--out bench/weight_update/layers.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig  # noqa: E402
from gpsearch.io import write_json  # noqa: E402
from gpsearch.methods.recon_math import reconstruct_rows, reconstruction_error  # noqa: E402
from gpsearch.methods.sparsegpt import SharedHessians  # noqa: E402
from gpsearch.model.blocks import block_linears, decoder_blocks  # noqa: E402
from gpsearch.model.blockwise import capture_block_inputs, feed_block, run_block  # noqa: E402
from gpsearch.pruning.masks import Pattern, make_mask  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, 10])
    ap.add_argument("--out", default="bench/weight_update/layers.json")
    args = ap.parse_args()
    from gpsearch.pruning.evaluator import Evaluator

    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    calib = CalibConfig(nsamples=128, seqlen=256)
    ev = Evaluator(args.model, calib)
    inputs = capture_block_inputs(ev.model, ev.features.samples(), calib.batch_size)
    rows = []
    with torch.no_grad():
        for i, block in enumerate(decoder_blocks(ev.model)[:max(args.blocks) + 1]):
            if i in args.blocks:
                linears = block_linears(block)
                hess = SharedHessians(linears)
                feed_block(block, inputs, linears, hess.add)
                for name, lin in linears.items():
                    W, H = lin.weight.detach().float(), hess.hessian(name)
                    mask = make_mask(W.abs() * (H.diagonal() / 2).sqrt().unsqueeze(0), 0.5,
                                     Pattern("unstructured"))
                    e0 = reconstruction_error(W, W * ~mask, H)
                    row = {"linear": f"{i}.{name}", "shape": list(W.shape), "mask_only": e0}
                    for label, kw in (("cg5", dict(max_iter=5)), ("cg20", dict(max_iter=20)),
                                      ("cg50", dict(max_iter=50)),
                                      ("exact", dict(solver="cholesky"))):
                        t = time.perf_counter()
                        new = reconstruct_rows(W, H, mask, **kw)
                        row[f"{label}_s"] = time.perf_counter() - t
                        row[label] = reconstruction_error(W, new, H)
                    gain = e0 - row["exact"]
                    row["exact_rel"] = row["exact"] / e0
                    for label in ("cg5", "cg20", "cg50"):
                        row[f"{label}_unrealised"] = (row[label] - row["exact"]) / gain
                    print(f"{row['linear']:>22} exact/mask {row['exact_rel']:.3f}  unrealised "
                          f"cg5 {row['cg5_unrealised']:.4f} cg20 {row['cg20_unrealised']:.4f} "
                          f"cg50 {row['cg50_unrealised']:.4f}  s: cg20 {row['cg20_s']:.1f} "
                          f"exact {row['exact_s']:.1f}", flush=True)
                    rows.append(row)
            inputs = run_block(block, inputs)
    write_json(args.out, {"commit": commit, "model": args.model, "calibration": calib.to_dict(),
                          "mask": "wanda 50% per row (X = diag(H)/2)", "percdamp": 0.01,
                          "load_avg": os.getloadavg()[0], "rows": rows})


if __name__ == "__main__":
    main()
