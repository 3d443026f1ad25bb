#!/usr/bin/env bash
# Regenerate every committed benchmark artefact under bench/ at the current commit: the four bench
# scripts, the default search (bench/default_search), the two compare tables, the Wanda prune
# record and the SlimGPT record, then the GPU check (which only says so on a machine without CUDA).
# Every JSON it writes records the commit and whether the tree was dirty (gpsearch.io).
# Takes hours on 2 CPU cores (the default search alone ~30 min, the seed-systems compare longer):
# run it on an otherwise idle machine, from a clean checkout.
#
#   bash scripts/reproduce_bench.sh             # run everything
#   bash scripts/reproduce_bench.sh --dry-run   # print the commands only
#   PY=/path/to/python bash scripts/reproduce_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# the best tree of the README search (bench/default_search/best.json)
DEFAULT_BEST="$(python3 -c 'import json; print(json.load(open("bench/default_search/best.json"))["best_tree"])')"
DRY=0
case "${1:-}" in
  --dry-run|-n) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

run() {
  echo "+ $*"
  if [[ $DRY == 0 ]]; then "$@"; fi
}

echo "# reproducing bench/ at $(git rev-parse HEAD 2>/dev/null || echo unknown)$(
  [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (dirty tree)')"

# 1. the bench scripts (each writes bench/<name>.json)
run "$PY" scripts/bench_eval.py --out bench/bench_eval.json
run "$PY" scripts/bench_search.py --out bench/bench_search.json
run "$PY" scripts/bench_baselines.py --out bench/bench_baselines.json
run "$PY" scripts/bench_ray.py --out bench/bench_ray.json
run "$PY" scripts/bench_memory.py --out bench/bench_memory.json
run "$PY" scripts/bench_export.py --out bench/export_embedded.json
run "$PY" scripts/bench_weight_update.py
run "$PY" scripts/bench_recon_layers.py --out bench/weight_update/layers.json

# 2. the default search (README's first command), into a fresh run directory; the committed
#    artefacts are its human-readable files (not the checkpoint, log or test report)
SEARCH=runs/reproduce-default-search
run rm -rf "$SEARCH"
run "$PY" -m gpsearch.cli search --out "$SEARCH"
run mkdir -p bench/default_search
for f in config.json log.jsonl hall_of_fame.csv progress.png summary.md lead.json funnel.json \
    funnel.md; do
  run cp "$SEARCH/$f" "bench/default_search/$f"
done
run cp "$SEARCH/test_report/results.md" bench/default_search/test_report.md
# the same trees on TEST with the search's other calibration condition (32 samples)
run "$PY" -m gpsearch.cli compare --methods "$(python3 -c 'import json; d = json.load(open("bench/default_search/best.json")); print(",".join([d["best_tree"], d["reported_tree"], "mul(W, sqrt(X))", "trees/gblm.json"]))')" \
    --tree-features dense --nsamples 32 --max-windows 64 --out runs/reproduce-default-nsamples32
run cp runs/reproduce-default-nsamples32/results.md bench/default_search/test_nsamples32.md
# the same search extended to 14 generations (a copy of its run directory, resumed), and its
# trees on the frontier's held-apart text and TEST (issue 26: does more budget move the frontier?)
LONG=runs/reproduce-search-long14
run rm -rf "$LONG"
run cp -r "$SEARCH" "$LONG"
run "$PY" -m gpsearch.cli search --resume "$LONG" --generations 14 --report none --robustness 0 \
  --lead-noise 0
run mkdir -p bench/search_long14
for f in config.json sessions.jsonl log.jsonl hall_of_fame.csv progress.png summary.md \
    funnel.json funnel.md; do
  run cp "$LONG/$f" "bench/search_long14/$f"
done
run "$PY" scripts/bench_frontier.py --runs bench/search_long14 --out bench/frontier_long14.json
# the single-condition default before 2026-12-02, and the same search with the robust pick
for spec in "default_search_single:14:" "search_robust_pick:10:nsamples=32"; do
  IFS=: read -r name gens pick <<<"$spec"
  run rm -rf "runs/reproduce-$name"
  run "$PY" -m gpsearch.cli search --fitness-nsamples "" --generations "$gens" \
    --pick-conditions "$pick" --out "runs/reproduce-$name"
  run mkdir -p "bench/$name"
  for f in config.json log.jsonl hall_of_fame.csv progress.png summary.md; do
    run cp "runs/reproduce-$name/$f" "bench/$name/$f"
  done
done
# issue 28's funnel benchmark: the README search as it was at 31eedc4 (the hurdle, no refill: 15
# min each) at search seeds 0-2, same calibration; bench_funnel.py (below) funnels and judges them
for seed in 0 1 2; do
  run rm -rf "runs/reproduce-funnel-seed$seed"
  run "$PY" -m gpsearch.cli search --refill 0 --seed "$seed" --out "runs/reproduce-funnel-seed$seed"
  run mkdir -p "bench/funnel_runs/seed$seed"
  for f in config.json log.jsonl hall_of_fame.csv progress.png summary.md best_tree.json; do
    run cp "runs/reproduce-funnel-seed$seed/$f" "bench/funnel_runs/seed$seed/$f"
  done
  run cp "runs/reproduce-funnel-seed$seed/test_report/results.md" \
    "bench/funnel_runs/seed$seed/test_report.md"
done
# the 2:4 search (issue 9), the same defaults otherwise
SEARCH24=runs/reproduce-search-24
run rm -rf "$SEARCH24"
run "$PY" -m gpsearch.cli search --pattern 2:4 --out "$SEARCH24"
run mkdir -p bench/search_24
for f in config.json log.jsonl hall_of_fame.csv progress.png summary.md; do
  run cp "$SEARCH24/$f" "bench/search_24/$f"
done
run cp "$SEARCH24/test_report/results.md" bench/search_24/test_report.md
# the diversity ablation: the README search without random immigrants (no robustness section)
NOIMM=runs/reproduce-no-immigrants
run rm -rf "$NOIMM"
run "$PY" -m gpsearch.cli search --immigrants 0 --robustness 0 --out "$NOIMM"
run mkdir -p bench/ablation_no_immigrants
for f in config.json log.jsonl hall_of_fame.csv progress.png summary.md; do
  run cp "$NOIMM/$f" "bench/ablation_no_immigrants/$f"
done
# exact dedup: fingerprint hits of two runs re-evaluated from scratch; then the throughput of
# the staged fitness beside the single-stage PPL one, on the README run's trees
run "$PY" scripts/bench_dedup.py "$SEARCH" "$SEARCH24" --samples 30 --out bench/bench_dedup.json
run "$PY" scripts/bench_throughput.py "$SEARCH" --trees 32 --long-trees 6 --long-windows 32 \
  --out bench/bench_throughput.json
# whole-model masks with the current selection beside the top-k one it replaced (same masks)
run "$PY" scripts/bench_masks.py "$SEARCH" --trees 8 --reps 3 --out bench/bench_masks.json
# OWL's lambda at 70% on the validation and test splits (the default is chosen on validation)
run "$PY" scripts/bench_owl_lambda.py --out bench/owl_lambda_validation.json
# the strongest hand trees at 50% (the README's table)
for t in gblm ria_sqrt wanda; do
  run "$PY" -m gpsearch.cli prune --tree "trees/$t.json" --sparsity 0.5 --max-windows 64 \
    --json "bench/hand_trees_embedded/$t.json"
done
# search efficiency (issue 26): GP vs random search vs mutation-only vs GP without seeds, 150
# first-stage evaluations per run, 3 seeds of gp and random (hours on 2 cores; resumable per run)
run "$PY" scripts/bench_search_efficiency.py --budget 150 --out bench/search_efficiency.json \
  --plot bench/search_efficiency.png
# the first-stage fitness of generation 0 under the AVX-512 and AVX2 kernels of one machine (the
# noise the ranking grid must exceed), and the hurdle proxy against the committed runs' fitness
run "$PY" scripts/bench_kernel_variants.py --out bench/kernel_variants.json
run "$PY" scripts/bench_hurdle.py --out bench/hurdle.json
# memory over a long run: RSS of one search process over 300 evaluations (gp + random arms)
run "$PY" scripts/bench_long_run_memory.py --out bench/long_run_memory.json
# the first stage's rank agreement with the last on the committed runs (their logs, no model)
run "$PY" scripts/bench_stage_agreement.py --out bench/stage_agreement.json
# the funnel's pick against the stage-only pick on TEST conditions neither used, over the README
# search's three seeds (funnel.json / funnel.md / funnel_conditions.json land in each run directory)
run "$PY" scripts/bench_funnel.py bench/funnel_runs/seed0 bench/funnel_runs/seed1 \
  bench/funnel_runs/seed2 --refunnel --out bench/funnel.json
# the frontier of the committed searches (issue 26's 38.1): their halls of fame and best
# first-stage trees on held-apart validation text under 128 and 32 calibration samples, the best on TEST
run "$PY" scripts/bench_frontier.py --out bench/frontier.json --runs bench/ablation_no_immigrants \
  bench/default_search bench/default_search_single bench/funnel_runs/seed0 \
  bench/funnel_runs/seed1 bench/funnel_runs/seed2 bench/search_fitness_nsamples32 \
  bench/search_robust_pick
# SparseGPT and Wanda at three commits in one environment (the 30.00 -> 30.34 question, issue 27)
run "$PY" scripts/bench_sparsegpt_commits.py --commits 65c495a,1f593f4,HEAD \
  --out bench/sparsegpt_commits.json
# the baselines' golden numbers (tests/integration/test_golden_baselines.py) and how much the
# thread count, the kernel variant and the calibration seed move them
run "$PY" scripts/bench_golden_baselines.py --out bench/golden_baselines.json
# fidelity of each fitness x token budget vs the TEST PPL, over 30 trees of that run (the best 10
# on the whole test split), then what a final stage on 64 validation windows would have picked
run "$PY" scripts/bench_fidelity.py --run "$SEARCH" --n 30 --best 12 --val-windows 64 \
  --test-windows 64 --final-test-windows 0 --budgets 512,1024,2048,4096,8192,16384 \
  --out bench/bench_fidelity.json
run "$PY" scripts/fidelity_final_stage.py bench/bench_fidelity.json "$SEARCH" \
  --out bench/fidelity_final_stage.json

# Wanda's tree (dense features) on the whole test split, beside the fidelity's best 10 (434 windows)
run "$PY" -m gpsearch.cli compare --methods trees/wanda.json --tree-features dense --sparsity 0.5 \
  --out bench/wanda_full_test

# 2b. robustness of the default search's best tree vs Wanda's tree (issue 14): terminals
#     rescaled, 32 calibration samples instead of 128 (test split; measured on 8 windows because
#     the machine was shared, see bench/README.md; 64 is the intended size on an idle machine)
run "$PY" -m gpsearch.cli robustness "$DEFAULT_BEST" \
  --conditions baseline,G=4,X=4,nsamples=32 --max-windows 8 --out bench/robustness_default
run "$PY" -m gpsearch.cli robustness "$DEFAULT_BEST" \
  --conditions baseline,G=4,X=4,nsamples=32 --max-windows 64 --out bench/robustness_default64
# (robustness_default64 was measured for an earlier best tree, robustness_single_best for the
#  single-condition default's, bench/default_search_single/best.json; robustness_default_best
#  for the current one, the tree of bench/default_search/best.json)
SINGLE_BEST="$(python3 -c 'import json; print(json.load(open("bench/default_search_single/best.json"))["best_tree"])')"
run "$PY" -m gpsearch.cli robustness "$SINGLE_BEST" --nsamples 128 --seqlen 256 \
  --conditions baseline,G=4,X=4,nsamples=32 --max-windows 64 --out bench/robustness_single_best
run "$PY" -m gpsearch.cli robustness "$DEFAULT_BEST" --nsamples 128 --seqlen 256 \
  --conditions baseline,G=4,X=4,nsamples=32 --max-windows 64 --out bench/robustness_default_best
# the README search with a calibration-size condition in its fitness, then its best tree's robustness
run rm -rf bench/search_fitness_nsamples32
run "$PY" -m gpsearch.cli search --fitness-nsamples 32 --generations 12 --out bench/search_fitness_nsamples32
run "$PY" -m gpsearch.cli robustness bench/search_fitness_nsamples32/best_tree.json --nsamples 128 \
  --seqlen 256 --conditions baseline,G=4,X=4,nsamples=32 --max-windows 64 \
  --out bench/robustness_fitness_nsamples32

# 3. the compare tables (test split, 64 windows, one calibration for every method)
run "$PY" -m gpsearch.cli compare \
  --methods magnitude,wanda,sparsegpt,pruner_zero,gblm,$DEFAULT_BEST \
  --pattern unstructured,2:4 --sparsity 0.5 --max-windows 64 --out bench/compare_embedded
run "$PY" -m gpsearch.cli compare \
  --methods magnitude,wanda,tiers,shortgpt,width-taylor,width-wanda,slimgpt,wanda+lora,shortgpt+lora \
  --sparsity 0.25 --max-windows 64 --option tiers.max_steps=10 --option tiers.batch_size=4 \
  --option wanda+lora.lora_max_steps=50 --option shortgpt+lora.lora_max_steps=50 \
  --out bench/compare_seed_systems

# zero-shot accuracy through the recipes (issue 12): wiki_lastword, all 975 examples
run "$PY" -m gpsearch.cli compare --methods baselines/wanda.yaml,baselines/magnitude.yaml \
  --eval-zero-shot wiki_lastword --max-windows 64 --out bench/compare_zeroshot

# layer-wise allocation at 70% (issue 10): uniform vs OWL with Wanda's tree, dense features
run "$PY" -m gpsearch.cli compare --methods trees/wanda.json --tree-features dense \
  --sparsity 0.7 --allocation uniform,owl --max-windows 64 --out bench/allocation_owl70
for L in 0.02 0.05; do
  run "$PY" -m gpsearch.cli compare --methods trees/wanda.json --tree-features dense --sparsity 0.7 \
    --allocation owl --owl-lambda "$L" --max-windows 64 --out "bench/allocation_owl70_lambda/l$L"
done

# a short allocation search at 70% with Wanda's tree (issue 10; 2 generations of 4 offspring)
run rm -rf bench/allocation_search70
run "$PY" -m gpsearch.cli allocate --tree trees/wanda.json --sparsity 0.7 \
  --out bench/allocation_search70 --offspring 4 --stages 512:1,1024:0.5 --generations 2 \
  --time-budget 600 --skip-uniform-test --init uniform --split-max 0

# the joint search of tree + allocation at 70% (issue 10): Wanda's tree, GBLM, RIA and the 4th tree
# of the README run's hall of fame as the pool, 8 offspring per generation, 15 minutes
run rm -rf bench/allocation_joint70
run "$PY" -m gpsearch.cli allocate --tree trees/wanda.json \
  --also-trees "trees/gblm.json;trees/ria.json;mul(add(coln(W), rown(mul(coln(W), G))), qrt(X))" \
  --sparsity 0.7 --offspring 8 --generations 200 --time-budget 900 --init uniform --split-max 0 \
  --out bench/allocation_joint70
# the same pool with generation 0's ramp seeds and the attention / MLP split (the defaults since
# 5eb450e), 24 minutes of search; then SparseGPT under the allocation it found
run rm -rf bench/allocation_joint70_seeded
run "$PY" -m gpsearch.cli allocate --tree trees/wanda.json \
  --also-trees "trees/gblm.json;trees/ria.json;mul(add(coln(W), rown(mul(coln(W), G))), qrt(X))" \
  --sparsity 0.7 --offspring 8 --time-budget 1440 --out bench/allocation_joint70_seeded
run "$PY" -m gpsearch.cli compare --methods sparsegpt --sparsity 0.7 \
  --allocation bench/allocation_joint70_seeded/best_allocation.json --max-windows 64 \
  --out bench/allocation_sparsegpt70_seeded
# a metric search at 70% under that allocation
run rm -rf bench/allocation_search70_metric
run "$PY" -m gpsearch.cli search --sparsity 0.7 --robustness 0 --fitness-nsamples "" \
  --generations 12 --allocation bench/allocation_joint70_seeded/best_allocation.json \
  --out bench/allocation_search70_metric
# the joint search again with --max-shift 0.3 (block 0 sat on the 0.2 bound) and the metric that
# search found in the pool, 18 minutes
run rm -rf bench/allocation_joint70_shift03
run "$PY" -m gpsearch.cli allocate --tree trees/wanda.json \
  --also-trees "trees/gblm.json;trees/ria.json;mul(add(coln(W), rown(mul(W, sqrt(coln(X))))), rown(sqrt(X)))" \
  --sparsity 0.7 --offspring 8 --max-shift 0.3 --time-budget 1080 \
  --out bench/allocation_joint70_shift03

# the same joint search at 50%: the README search's best tree first, 15 minutes
run rm -rf bench/allocation_joint50
run "$PY" -m gpsearch.cli allocate --tree "$DEFAULT_BEST" \
  --also-trees "trees/wanda.json;trees/ria.json;exp(mul(rown(add(coln(W), rown(mul(W, G)))), qrt(X)))" \
  --sparsity 0.5 --offspring 8 --generations 200 --time-budget 900 --init uniform --split-max 0 \
  --out bench/allocation_joint50
run rm -rf bench/allocation_joint50_resumed
run cp -r bench/allocation_joint50 bench/allocation_joint50_resumed
run "$PY" -m gpsearch.cli allocate --resume bench/allocation_joint50_resumed --generations 200 \
  --time-budget 780

# SparseGPT at 70% under the uniform, OWL and searched allocations (issue 10)
run "$PY" -m gpsearch.cli compare --methods sparsegpt --sparsity 0.7 --tree-features dense \
  --allocation uniform,owl,bench/allocation_search70/best_allocation.json --max-windows 64 \
  --out bench/allocation_sparsegpt70

# 4. single-method records
run "$PY" -m gpsearch.cli prune --tree trees/wanda.json --sparsity 0.5 --dense-ppl \
  --json bench/prune_wanda_embedded.json
run "$PY" -m gpsearch.cli structured --method slimgpt --pruning-ratio 0.25 --max-windows 64 \
  --json bench/slimgpt_embedded.json

# 5. the GPU check (bench/gpu_check.json; exits 0 with a message where there is no CUDA)
run bash scripts/gpu_check.sh
