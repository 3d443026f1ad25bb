"""Benchmark: the deployable export on the embedded model. For 50% unstructured and 2:4 with
Wanda's tree (dense features, calibration 128 x 256), the pruned model is saved as a dense HF
directory and in the compressed-tensors format, the latter loaded back with that package's own
decompressor; recorded: the safetensors bytes of both formats, whether every weight comes back
bit-identical, and the TEST-split perplexity (first 64 windows x 256) of the resident pruned
model and of the reloaded one. The same sizes for the model cast to bfloat16 (the dtype vLLM
serves), again with the bit-identity check. Writes bench/export_embedded.json.

    .venv/bin/python scripts/bench_export.py [--max-windows 64] [--out bench/export_embedded.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _identical(a, b) -> bool:
    """Every tensor of model ``a``'s state dict equal (bit for bit) in ``b``."""
    import torch

    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def one_pattern(evaluator, pattern_name: str, ev, work: Path) -> dict:
    import torch

    from gpsearch.fitness.perplexity import perplexity
    from gpsearch.model.export import load_compressed, save_compressed, weights_bytes
    from gpsearch.model.save import save_pruned
    from gpsearch.pruning.masks import parse_pattern
    from gpsearch.tree import load_tree

    pattern = parse_pattern(pattern_name, 0.5)
    evaluator.prune(load_tree("wanda"), 0.5, pattern, mode="dense")
    lm = evaluator.lm
    record = {"tree": "wanda", "pattern": pattern_name}
    row = {"pattern": pattern_name, "ppl_resident": evaluator.perplexity(ev)["ppl"]}
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16":  # a cast copy: casting in place would round the resident
            # model's other tensors and buffers (embeddings, norms, RoPE's inv_freq) for good
            cast = copy.deepcopy(evaluator.model).to(torch.bfloat16)
            lm = dataclasses.replace(evaluator.lm, model=cast)
        hf, ct = work / f"{pattern_name}-{dtype}-hf", work / f"{pattern_name}-{dtype}-ct"
        save_pruned(lm, hf, record)
        info = save_compressed(lm, ct, record)
        back = load_compressed(ct, dtype=getattr(torch, dtype))
        out = {"hf_bytes": weights_bytes(hf), "compressed_bytes": info["weights_bytes"],
               "compression_format": info["compression_format"],
               "global_sparsity": info["global_sparsity"],
               "weights_identical": _identical(lm.model, back)}
        out["ratio"] = out["compressed_bytes"] / out["hf_bytes"]
        if dtype == "float32":
            out["ppl_reloaded"] = perplexity(back, evaluator.windows(ev), ev.batch_size)["ppl"]
            out["ppl_identical"] = out["ppl_reloaded"] == row["ppl_resident"]
        row[dtype] = out
        del back
        shutil.rmtree(hf), shutil.rmtree(ct)
        print(f"{pattern_name} {dtype}: HF {out['hf_bytes'] / 2**20:.1f} MiB, compressed "
              f"{out['compressed_bytes'] / 2**20:.1f} MiB ({out['ratio']:.3f}), identical "
              f"{out['weights_identical']}" + (f", PPL {row['ppl_resident']:.4f} -> "
              f"{out['ppl_reloaded']:.4f}" if "ppl_reloaded" in out else ""), flush=True)
    del lm
    evaluator.restore()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-windows", type=int, default=64)
    ap.add_argument("--out", default="bench/export_embedded.json")
    a = ap.parse_args()
    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.io import code_version
    from gpsearch.pruning.evaluator import Evaluator

    calib = CalibConfig(nsamples=128, seqlen=256)
    ev = EvalConfig(split="test", seqlen=256, max_windows=a.max_windows)
    evaluator = Evaluator(a.model, calib, progress=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpsearch-export-") as tmp:
        for name in ("unstructured", "2:4"):
            rows.append(one_pattern(evaluator, name, ev, Path(tmp)))
    out = {"model": a.model, **code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "calibration": calib.to_dict(), "evaluation": ev.to_dict(), "tree": "wanda",
           "features": "dense", "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
