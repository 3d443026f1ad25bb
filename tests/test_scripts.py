"""The scripts: every bench script records the commit it measured, scripts/reproduce_bench.sh
regenerates every committed artefact (checked with --dry-run), and scripts/gpu_check.sh exits
cleanly with a clear message on a machine without CUDA."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_every_bench_script_writes_the_commit_and_is_in_reproduce_bench():
    scripts = sorted(ROOT.glob("scripts/bench_*.py"))
    assert len(scripts) >= 4
    dry = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_bench.sh"), "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if line.startswith("+ ")]
    for script in scripts:
        text = script.read_text()
        assert re.search(r"code_version\(\)|\"git\", \"rev-parse\", \"HEAD\"", text), \
            script.name  # the commit goes into the script's JSON
        assert any(f"scripts/{script.name}" in c for c in commands), script.name
    for artefact in ("bench/default_search", "bench/compare_embedded",
                     "bench/compare_seed_systems", "bench/prune_wanda_embedded.json",
                     "bench/slimgpt_embedded.json", "scripts/gpu_check.sh"):
        assert any(artefact in c for c in commands), artefact
    committed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "bench"],
                               capture_output=True, text=True).stdout.split()
    readme = (ROOT / "bench" / "README.md").read_text()
    for f in committed:  # every committed artefact is regenerated and dated in bench/README.md
        top = "/".join(f.split("/")[:2])
        if f != "bench/README.md":
            assert any(top.removesuffix(".json") in c or top in c for c in commands), f
            assert f"`{top.removeprefix('bench/')}" in readme, f


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_gpu_check_without_cuda_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PY": sys.executable})
    assert r.returncode == 0, r.stderr
    assert "no CUDA device here" in r.stdout and not out.exists()
