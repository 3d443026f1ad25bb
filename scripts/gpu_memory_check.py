"""GPU check of the memory layout (needs CUDA; run by scripts/gpu_check_memory.sh): the
embedded model in bfloat16 on cuda:0, the bytes really allocated on the device per pruned
parameter (torch.cuda.memory_allocated) after loading the model and the features X and G, the
peak while pruning with a G tree, and restore bit-exactness. Prints one JSON line and exits 1
when the resident bytes exceed 4 per pruned parameter (beyond the non-pruned modules).

    .venv/bin/python scripts/gpu_memory_check.py [--dtype bfloat16] [--nsamples 8]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    from gpsearch.config import CalibConfig
    from gpsearch.model.memory import accounting
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import parse_pattern
    from gpsearch.tree import parse_prefix

    torch.cuda.reset_peak_memory_stats()
    e = Evaluator(a.model, CalibConfig(data="wiki", nsamples=a.nsamples, seqlen=256),
                  a.dtype, "cuda", a.cache_dir)
    model_bytes = torch.cuda.memory_allocated()
    other = sum(p.numel() * p.element_size() for p in e.model.parameters()) - sum(
        lin.weight.numel() * lin.weight.element_size() for lin in e.linears.values())
    for kind in ("X", "G"):
        e.features.get(kind)
    torch.cuda.synchronize()
    resident = torch.cuda.memory_allocated()
    acc = accounting(e)
    params = acc["pruned_params"]
    bits = {n: lin.weight.detach().clone() for n, lin in e.linears.items()}
    torch.cuda.reset_peak_memory_stats()
    e.prune(parse_prefix("add(mul(W, sqrt(add(X, X))), zsn(mul(mms(W), G)))"), 0.5,
            parse_pattern("unstructured"))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - resident
    e.restore()
    torch.cuda.synchronize()
    view = torch.int16 if next(iter(bits.values())).element_size() == 2 else torch.int32
    exact = all(torch.equal(bits[n].view(view), lin.weight.view(view))
                for n, lin in e.linears.items())
    per_param = (resident - other) / params
    out = {"dtype": a.dtype, "pruned_params": params, "model_allocated_bytes": model_bytes,
           "resident_allocated_bytes": resident, "non_pruned_module_bytes": other,
           "resident_per_pruned_param": per_param,
           "accounted_per_pruned_param": acc["per_place"]["accelerator"]["per_param"],
           "peak_transient_prune_bytes": peak, "restore_bit_exact": exact,
           "host_restore_pinned": all(e.dense.host(n).is_pinned() for n in e.dense)}
    print(json.dumps(out))
    return 0 if exact and (a.dtype not in ("bfloat16", "float16") or per_param <= 4.01) else 1


if __name__ == "__main__":
    sys.exit(main())
