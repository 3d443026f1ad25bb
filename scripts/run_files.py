"""What the bench scripts read from a finished search directory: its config.json and log.jsonl
(plain JSON, never pickle), and the evaluator that search used (model, calibration, evaluation
windows, sparsity pattern), rebuilt from its config."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.pruning.evaluator import Evaluator  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402


def read_run(run: Path) -> tuple[dict, list[dict]]:
    """(config.json, the records of log.jsonl) of a search directory."""
    config = json.loads((run / "config.json").read_text())
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    return config, records


def run_evaluator(config: dict, min_windows: int = 0):
    """(evaluator, pattern, validation EvalConfig) of a search's config; the evaluation holds at
    least ``min_windows`` windows."""
    s = config["settings"]
    ev = EvalConfig.from_dict(config["evaluation"])
    ev = replace(ev, max_windows=max(ev.max_windows, min_windows))
    pattern = parse_pattern(s["pattern"], s["sparsity"], s["scope"])
    evaluator = Evaluator(s["model"], CalibConfig.from_dict(config["calibration"]), s["dtype"],
                          s["device"], s.get("cache_dir"))
    return evaluator, pattern, ev
