"""Golden numbers: the embedded model's dense, magnitude, Wanda and SparseGPT test perplexity
(50% unstructured and 2:4) at cheap settings, pinned so that the next silent move fails CI.

Settings: 8 calibration samples x 256 tokens (seed 0), the first 4 test windows x 256, two
intra-op threads (CI's cores), each method through ``gpsearch compare``'s ``run_one``. The
numbers come from ``scripts/bench_golden_baselines.py`` (bench/golden_baselines.json), which
also measures what moves them: the thread count and the kernel variant (AVX-512 vs AVX2) by
float rounding, the calibration seed more. GOLDEN holds one set per kernel variant torch
reports (``torch.backends.cpu.get_cpu_capability()``); TOLERANCE, per method, is above what
a thread count or a kernel variant moves it. SparseGPT's is wide (10%): at 8 samples its numbers
move by several percent with the float rounding alone, so this pin catches only gross moves of
it; bench/sparsegpt_commits.json checks its code path bit for bit across commits instead.
"""

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.jobs.compare.registry import METHODS
from gpsearch.jobs.compare.run import run_one
from gpsearch.pruning.masks import parse_pattern

pytestmark = pytest.mark.integration

# capability -> {row: test PPL} (bench/golden_baselines.json, 2 threads, torch 2.13.0+cpu)
GOLDEN = {
    "AVX512": {"dense": 14.449280788860346, "magnitude unstructured": 231.70231097386727,
               "magnitude 2:4": 1008.0327993779518, "wanda unstructured": 34.97592482476445,
               "wanda 2:4": 126.7190851654926, "sparsegpt unstructured": 36.44367489900375,
               "sparsegpt 2:4": 81.01852383285244},
    "AVX2": {"dense": 14.449167105066742, "magnitude unstructured": 231.70034988634708,
             "magnitude 2:4": 1008.0287137125205, "wanda unstructured": 35.03217426284916,
             "wanda 2:4": 126.71846581722943, "sparsegpt unstructured": 38.20284554947235,
             "sparsegpt 2:4": 75.91332039897755},
}
# relative, per method: across the two kernel variants and 1 vs 2 threads dense and magnitude
# move by 1e-5, Wanda (block-sequential features) by up to 0.16%, SparseGPT by up to 6.3% (3.8%
# from the thread count alone: its float32 solve with 8 samples is that sensitive); calibration
# seed 1 instead of 0 moves Wanda by 0.6% / 2.1% and SparseGPT by 5.2% / 15.7%
TOLERANCE = {"dense": 1e-3, "magnitude": 1e-3, "wanda": 0.005, "sparsegpt": 0.10}


@pytest.fixture(scope="module")
def measured(tmp_path_factory, embedded_lm):
    from gpsearch.pruning.evaluator import Evaluator

    threads = torch.get_num_threads()
    evaluator = Evaluator(calib=CalibConfig(nsamples=8, seqlen=256, seed=0),
                          cache_dir=tmp_path_factory.mktemp("golden"), lm=embedded_lm)
    torch.set_num_threads(2)  # the Evaluator may set its own: the golden numbers' setting
    ev = EvalConfig(split="test", seqlen=256, max_windows=4)
    try:
        out = {"dense": evaluator.perplexity(ev)["ppl"]}
        for row in GOLDEN_ROWS:
            method, pattern = row.split()
            rec = run_one(evaluator, METHODS[method], parse_pattern(pattern, 0.5), 0.5, ev,
                          {}, {})
            assert rec["error"] is None, (row, rec["error"])
            out[row] = rec["ppl"]
    finally:
        torch.set_num_threads(threads)
    return out


GOLDEN_ROWS = [f"{m} {p}" for m in ("magnitude", "wanda", "sparsegpt")
               for p in ("unstructured", "2:4")]


def test_baselines_match_their_golden_numbers(measured):
    capability = torch.backends.cpu.get_cpu_capability()
    assert capability in GOLDEN, (
        f"no golden numbers for the {capability} kernels: measure them with "
        "scripts/bench_golden_baselines.py and add them to GOLDEN")
    golden = GOLDEN[capability]
    moved = {row: (measured[row], want) for row, want in golden.items()
             if abs(measured[row] - want) > TOLERANCE[row.split()[0]] * want}
    assert not moved, f"moved beyond their tolerance {TOLERANCE} (measured, golden): {moved}"
    for pattern in ("unstructured", "2:4"):  # (with 8 samples SparseGPT trails Wanda here)
        assert measured["dense"] < min(measured[f"{m} {pattern}"] for m in ("wanda", "sparsegpt"))
        assert max(measured[f"{m} {pattern}"] for m in ("wanda", "sparsegpt")) < \
            measured[f"magnitude {pattern}"]
