"""Test helper (not a test): ``python -m tests.cli_pause MARKER GEN N ARGS...`` runs
``gpsearch ARGS`` and, right after the N-th log record of generation GEN is on disk (so in the
middle of that generation: some of its records logged, its checkpoint not yet written), creates
MARKER and sleeps until the test kills it with SIGKILL. Only tests import this module."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gpsearch.cli import main
from gpsearch.engine.rundir import RunDir


def run() -> int:
    marker, gen, n, argv = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    original, seen = RunDir.log, []

    def log(self, record):
        original(self, record)
        if record["gen"] == gen:
            seen.append(record)
            if len(seen) == n:
                marker.write_text("paused\n")
                time.sleep(600)

    RunDir.log = log
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
