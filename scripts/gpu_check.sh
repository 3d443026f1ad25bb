#!/usr/bin/env bash
# The CUDA check: the tests marked `cuda`, a bfloat16 and a float32 prune of the embedded model on
# cuda, a 2-generation search on cuda, and (with 2 or more GPUs) the same search on 2 Ray GPU
# actors. Timings, perplexities and the commit go to bench/gpu_check.json. On a machine without
# CUDA it says so and exits 0 (nothing to check, nothing written).
#
#   bash scripts/gpu_check.sh [--out bench/gpu_check.json]    (PY=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=bench/gpu_check.json
[[ "${1:-}" == "--out" ]] && OUT=$2

if ! GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null); then
  echo "gpu_check: cannot import torch with $PY" >&2; exit 2
fi
if [[ "$GPUS" == "0" ]]; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check, $OUT not written"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpsearch-gpu-check.XXXXXX")
STEPS="$WORK/steps.tsv"
: > "$STEPS"
step() {  # step NAME CMD...: run, time, record "name<TAB>rc<TAB>seconds<TAB>log"
  local name=$1; shift
  echo "== $name: $*"
  local t0=$(date +%s.%N)
  "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  local t1=$(date +%s.%N)
  tail -n 3 "$WORK/$name.log"
  printf "%s\t%s\t%s\t%s\n" "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" "$WORK/$name.log" >> "$STEPS"
  echo "   rc $rc"
}

step cuda_tests "$PY" -m pytest -q -m cuda tests
for dtype in bfloat16 float32; do
  step "prune_$dtype" "$PY" -m gpsearch.cli prune --model smollm2-135m --tree trees/wanda.json \
    --sparsity 0.5 --device cuda --dtype "$dtype" --max-windows 64 --dense-ppl \
    --cache-dir "$WORK/cache" --json "$WORK/prune_$dtype.json"
done
step search_cuda "$PY" -m gpsearch.cli search --device cuda --generations 2 --report none \
  --cache-dir "$WORK/cache" --out "$WORK/search_cuda"
if (( GPUS >= 2 )); then
  step search_ray_2gpu "$PY" -m gpsearch.cli search --device cuda --workers 2 --generations 2 \
    --report none --cache-dir "$WORK/cache" --out "$WORK/search_ray_2gpu"
fi
step memory_offload_device_map env PY="$PY" bash scripts/gpu_check_memory.sh

"$PY" - "$STEPS" "$WORK" "$OUT" <<'PYEOF'
import json, os, sys, time
from pathlib import Path
import torch
from gpsearch.io import code_version

steps_file, work, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
steps = {}
for line in Path(steps_file).read_text().splitlines():
    name, rc, seconds, log = line.split("\t")
    rec = {"rc": int(rc), "wall_s": round(float(seconds), 2),
           "log_tail": Path(log).read_text(errors="replace").splitlines()[-3:]}
    if name.startswith("prune_") and (work / f"{name}.json").is_file():
        r = json.loads((work / f"{name}.json").read_text())
        rec.update(ppl=r.get("ppl"), dense_ppl=r.get("dense_ppl"), timings=r.get("timings"),
                   achieved_sparsity=r.get("achieved_sparsity"), evaluation=r.get("evaluation"))
    if name.startswith("search_") and (work / name / "checkpoint.json").is_file():
        cp = json.loads((work / name / "checkpoint.json").read_text())
        rec.update(generations=cp["generation"], best=cp["hof"][0] if cp["hof"] else None,
                   counters=cp["counters"])
    steps[name] = rec
result = {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
          "torch": torch.__version__, "cuda": torch.version.cuda, "steps": steps,
          "all_ok": all(s["rc"] == 0 for s in steps.values()), **code_version(),
          "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: (v["rc"], v["wall_s"]) for k, v in steps.items()}))
print(f"gpu_check: {'all steps passed' if result['all_ok'] else 'SOME STEPS FAILED'}; wrote {out}")
sys.exit(0 if result["all_ok"] else 1)
PYEOF
