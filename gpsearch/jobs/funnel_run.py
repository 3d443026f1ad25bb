"""The parts of a finished search run directory the funnel reads (config.json, hall_of_fame.csv,
log.jsonl), as untrusted data: every field it uses is checked, a mistake is one ``UserError``
line, raised before any model is loaded. The funnel file: ``jobs/funnel_spec.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.engine.conditions import parse_condition
from gpsearch.engine.rundir_check import MAX_CONFIG_BYTES, MAX_LOG_LINE
from gpsearch.errors import UserError
from gpsearch.io import Refused, read_json, read_text
from gpsearch.jobs.funnel_spec import is_int, is_num, text_ok

MAX_HOF_BYTES = 16 << 20
MAX_LOG_BYTES = 4 << 30
MAX_ROWS = 100_000
RUN_FILES = ("config.json", "hall_of_fame.csv", "log.jsonl", "summary.md")


@dataclass
class Run:
    path: Path
    config: dict
    model: str
    dtype: str
    device: str
    cache_dir: str | None
    sparsity: float
    pattern: str
    scope: str
    calib: CalibConfig
    ev: EvalConfig  # the validation windows the run ranked on
    fitness_conditions: list  # the run's multi-condition fitness (Condition), baseline first
    hof: list  # {"rank", "expr", "fitness"} by rank
    seeds: list  # {"expr", "fitness"} best first-stage fitness first
    origins: dict  # expr -> parent exprs (its first log record)
    reported: str | None = None  # best_tree.json (what the search reported), prefix; None: none


def read_run(path) -> Run:
    """A finished search run directory, as far as the funnel reads it (untrusted: every field it
    uses is checked; a mistake is one UserError line)."""
    p = Path(str(path)) if path is not None else None
    if p is None or not str(path).strip():
        raise UserError("funnel needs a search run directory (RUN_DIR)")
    if not p.is_dir():
        raise UserError(f"run directory {p} not found" if not p.exists() else
                        f"{p} is not a directory (a search run directory is needed)")
    for name in RUN_FILES:
        if not (p / name).is_file():
            hint = ("the search has not finished: finish it with gpsearch search --resume "
                    f"{p}" if name == "summary.md" else "not a search run directory")
            raise UserError(f"{p}: no {name} ({hint})")
    label = str(p / "config.json")
    try:
        cfg = read_json(p / "config.json", label, MAX_CONFIG_BYTES)
    except RecursionError:
        raise UserError(f"{label}: nested too deeply") from None

    def bad(msg):
        return UserError(f"{label}: {msg}")

    if not isinstance(cfg, dict) or not isinstance(cfg.get("settings"), dict):
        raise bad("has no settings object (not a search run directory)")
    s = cfg["settings"]
    for name in ("model", "dtype", "device", "pattern", "scope"):
        if not text_ok(s.get(name)):
            raise bad(f"settings.{name} must be text")
    if not is_num(s.get("sparsity")) or not 0 <= s["sparsity"] < 1:
        raise bad("settings.sparsity must be a number in [0, 1)")
    if s.get("cache_dir") is not None and not text_ok(s["cache_dir"], nonempty=False):
        raise bad("settings.cache_dir must be text or null")
    if s.get("allocation") is not None:
        raise bad("the run searched under a layer-wise allocation: the funnel scores uniform "
                  "sparsity only")
    calib = _config_of(CalibConfig, cfg.get("calibration"), bad, "calibration",
                       {"data": str, "nsamples": int, "seqlen": int, "seed": int,
                        "batch_size": int})
    ev = _config_of(EvalConfig, cfg.get("evaluation"), bad, "evaluation",
                    {"data": str, "split": str, "seqlen": int, "max_windows": int,
                     "batch_size": int})
    if ev.split != "validation" or ev.max_windows is None:
        raise bad("evaluation must be the search's validation windows")
    conds = []
    for i, c in enumerate(cfg.get("conditions") or []):
        if not isinstance(c, dict) or not text_ok(c.get("label")):
            raise bad(f"conditions[{i}] must be an object with a label")
        try:
            conds.append(parse_condition(c["label"]))
        except UserError as e:
            raise bad(f"conditions[{i}]: {e}") from None
    cache = s.get("cache_dir")
    run = Run(p, cfg, s["model"], s["dtype"], s["device"],
              None if cache is None or cache.startswith("<") else cache, float(s["sparsity"]),
              s["pattern"], s["scope"], calib, ev, conds, _hall_of_fame(p), *_log(p))
    run.reported = _reported(p)
    return run


def _reported(p: Path) -> str | None:
    """best_tree.json as a prefix expression (parsed by our tree reader), None when absent."""
    from gpsearch.tree import load_tree, to_prefix

    path = p / "best_tree.json"
    if not path.is_file():
        return None
    try:
        return to_prefix(load_tree(str(path)))
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def _config_of(cls, d, bad, name: str, types: dict):
    if not isinstance(d, dict):
        raise bad(f"{name} must be an object")
    for k, t in types.items():
        v = d.get(k)
        ok = is_int(v) if t is int else text_ok(v)
        if not ok:
            raise bad(f"{name}.{k} must be {'an integer' if t is int else 'text'}")
    try:
        return cls.from_dict({k: d[k] for k in types})
    except UserError as e:
        raise bad(f"{name}: {e}") from None


def _hall_of_fame(p: Path) -> list[dict]:
    label = p / "hall_of_fame.csv"
    try:
        text = read_text(label, MAX_HOF_BYTES)
    except Refused as e:
        raise UserError(f"{label}: {e.reason.replace('_', ' ')}") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        for n, row in enumerate(reader, 2):
            if n > MAX_ROWS:
                raise UserError(f"{label}: more than {MAX_ROWS} rows")
            rank, expr = (row.get("rank") or "").strip(), row.get("expression")
            if not rank.isdigit() or not text_ok(expr):
                raise UserError(f"{label}: line {n} needs an integer rank and an expression")
            rows.append({"rank": int(rank), "expr": expr.strip(),
                         "fitness": _float(row.get("fitness"))})
    except csv.Error as e:
        raise UserError(f"{label}: not a CSV file ({e})") from None
    if not rows:
        raise UserError(f"{label}: no trees")
    return sorted(rows, key=lambda r: r["rank"])


def _float(text) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _log(p: Path) -> tuple[list[dict], dict]:
    """(seeds best first-stage fitness first, {expr: parent exprs}) from log.jsonl."""
    path = p / "log.jsonl"
    if path.stat().st_size > MAX_LOG_BYTES:
        raise UserError(f"{path}: larger than {MAX_LOG_BYTES} bytes")
    seeds, origins, cut = {}, {}, None
    with open(path, "rb") as f:
        n = 0
        while raw := f.readline(MAX_LOG_LINE + 1):
            n += 1
            if len(raw) > MAX_LOG_LINE:
                raise UserError(f"{path}: line {n} is longer than {MAX_LOG_LINE} bytes")
            if cut is not None:
                raise UserError(f"{path}: line {cut} is not a JSON record")
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):
                cut = n  # allowed only as the last line (a run killed while writing)
                continue
            if not isinstance(rec, dict) or not text_ok(rec.get("expr")):
                raise UserError(f"{path}: line {n} is not a candidate record with an expr")
            expr, parents = rec["expr"], rec.get("parents") or []
            if not isinstance(parents, list) or not all(text_ok(x) for x in parents):
                raise UserError(f"{path}: line {n}: parents must be a list of expressions")
            origins.setdefault(expr, parents)
            if rec.get("op") == "seed" and expr not in seeds:
                seeds[expr] = {"expr": expr, "fitness": _first_stage(rec), "order": len(seeds)}
    ranked = sorted(seeds.values(), key=lambda r: (r["fitness"], r["order"]))
    return [{"expr": r["expr"], "fitness": r["fitness"]} for r in ranked], origins


def _first_stage(rec: dict) -> float:
    stages = rec.get("stages")
    if isinstance(stages, list) and stages and isinstance(stages[0], dict) \
            and is_num(stages[0].get("score")):
        return float(stages[0]["score"])
    return float(rec["fitness"]) if is_num(rec.get("fitness")) else math.inf


def seed_ancestors(expr: str, origins: dict, seeds: set) -> set:
    """The seeds ``expr`` descends from, through the parents of each tree's first log record."""
    found, seen, todo = set(), set(), [expr]
    while todo and len(seen) < MAX_ROWS:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        if e in seeds:
            found.add(e)
            continue
        todo.extend(origins.get(e, ()))
    return found
