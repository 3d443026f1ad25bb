"""Every result records the commit it was measured at: the provenance helper and the --json
records (bench scripts: tests/test_scripts.py; config.json / results.json: the search and
compare tests)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gpsearch import io as provenance
from gpsearch.jobs.record import write_record

ROOT = Path(__file__).resolve().parents[1]


def test_code_version_is_this_checkout_or_unknown(tmp_path, monkeypatch):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    got = provenance.code_version()
    if head.returncode == 0:
        assert got["commit"] == head.stdout.strip() and isinstance(got["dirty"], bool)
    else:  # a copy without .git
        assert got == {"commit": "unknown", "dirty": None}
    monkeypatch.setattr(provenance, "ROOT", tmp_path)  # not a git checkout
    provenance.code_version.cache_clear()
    try:
        assert provenance.code_version() == {"commit": "unknown", "dirty": None}
    finally:
        provenance.code_version.cache_clear()


def test_json_records_carry_the_commit(tmp_path):
    write_record(tmp_path / "r.json", {"ppl": 1.5})
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["ppl"] == 1.5 and rec["commit"] == provenance.code_version()["commit"]
    assert "dirty" in rec

