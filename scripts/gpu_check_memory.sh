#!/usr/bin/env bash
# GPU checks of issue 15 (memory layout, --offload, --device-map), to be merged into
# scripts/gpu_check.sh. On a machine with CUDA: the offload / memory / feature tests (their CUDA
# cases run only when a GPU is present: real host <-> device block moves, pinned restore copies),
# then the measured bytes per pruned parameter of the embedded model in bfloat16 on cuda:0.
# With two or more GPUs it also runs prune with --device-map balanced on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' || {
    echo "gpu_check_memory: no CUDA device, skipped"; exit 0; }
"$PY" -m pytest -q tests/model/test_offload.py tests/model/test_memory.py tests/pruning/test_features.py
"$PY" scripts/gpu_memory_check.py --dtype bfloat16
"$PY" scripts/gpu_memory_check.py --dtype float32
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    "$PY" -m gpsearch.cli prune --tree wanda --dtype bfloat16 --device-map balanced \
        --nsamples 16 --max-windows 8
fi
"$PY" -m gpsearch.cli prune --tree wanda --features sequential --dtype bfloat16 --device cuda \
    --offload --nsamples 16 --max-windows 8
