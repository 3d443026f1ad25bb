"""The whole CLI survives ``kill -9``: a search on a tiny saved LLaMA, SIGKILLed in the middle of
generation 1 (two of its log records written, no checkpoint of it), then ``--resume``d, ends with
the same hall_of_fame.csv, best_tree.json and log.jsonl records (timings aside) as an
uninterrupted run. The killed run is a subprocess; the uninterrupted run and the resume run in
this process through the same CLI entry point, ``gpsearch.cli.main``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpsearch.cli import main
from tests.conftest import make_llama, make_tokenizer, write_corpus

ROOT = Path(__file__).resolve().parents[3]


def records(run: Path) -> list[dict]:
    out = []
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("seconds")
        out.append(rec)
    return out


def test_sigkill_mid_generation_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                        one_thread):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread here and there: same arithmetic
    make_llama().save_pretrained(tmp_path / "model")
    make_tokenizer().save_pretrained(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    args = ["search", "--model", str(tmp_path / "model"), "--data", corpus, "--nsamples", "4",
            "--seqlen", "16", "--batch-size", "4", "--stages", "32:1,64:0.5", "--report", "none",
            "--population", "4", "--offspring", "6", "--elite", "2", "--generations", "2",
            "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    ref, run, marker = tmp_path / "ref", tmp_path / "run", tmp_path / "paused"
    err = open(tmp_path / "victim.err", "wb")  # a file, not a pipe: a full pipe would block
    victim = subprocess.Popen([sys.executable, "-m", "tests.cli_pause", str(marker), "1", "2",
                               *args, "--out", str(run), "--cache-dir", str(tmp_path / "c2")],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=err)
    try:
        # the uninterrupted run, in this process, while the subprocess starts
        assert main([*args, "--out", str(ref), "--cache-dir", str(tmp_path / "c1")]) == 0
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert victim.poll() is None, (tmp_path / "victim.err").read_text()[-2000:]
            assert time.monotonic() < deadline, "the search never reached generation 1"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        err.close()
    # killed mid-generation: generation 1 partly logged, the last checkpoint is generation 0
    assert json.loads((run / "checkpoint.json").read_text())["generation"] == 0
    assert sum(r["gen"] == 1 for r in records(run)) == 2

    assert main(["search", "--resume", str(run)]) == 0
    assert records(run) == records(ref)
    assert {r["gen"] for r in records(ref)} == {0, 1, 2}
    for name in ("hall_of_fame.csv", "best_tree.json"):
        assert (run / name).read_text() == (ref / name).read_text(), name
    cp_run, cp_ref = (json.loads((d / "checkpoint.json").read_text()) for d in (run, ref))
    assert cp_run == cp_ref and cp_ref["generation"] == 2
