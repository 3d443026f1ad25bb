"""A run directory is untrusted input: every file ``--resume`` reads is checked here, in full,
before anything is loaded, computed or changed. A malformed directory is one ``UserError`` line
(exit 2 at the CLI) naming the file and the field, and the directory stays exactly as it was.

What is checked (torch-free, like the rest of ``gpsearch.search``):
- every JSON file: a regular file, at most ``MAX_CONFIG_BYTES`` / ``MAX_CHECKPOINT_BYTES``, UTF-8,
  valid JSON (not nested deeper than the parser allows);
- config.json: ``settings`` (names known to the search, values of the type of their default,
  finite numbers, strings without NUL and at most 4096 characters), ``space`` (a valid search
  space), ``seed_exprs`` (trees of that space within its limits), ``evaluation`` and
  ``calibration`` (the fields the summary reads);
- checkpoint.json: version, generation, the same search config, space and seed trees as the
  run's config, the RNG state (what ``random.setstate`` accepts), every tree of the population,
  cache and hall of fame parsed within the space and its height / size limits, fitness values
  finite and in [0, PENALTY] (perplexities may be None, inf or NaN: ``fitness_of`` caps those),
  keys that refer to cache entries, counters non-negative integers, a logbook row per generation;
- log.jsonl: every line a JSON object with an integer ``gen``; only the LAST line may be cut
  (a write interrupted by a kill); no line longer than ``MAX_LOG_LINE``;
- the artefacts a run rewrites (hall_of_fame.csv, best_tree.json, progress.png, summary.md) are
  not directories.

Unknown keys. A record that ``checkpoint.restore`` rebuilds field by field (the checkpoint's top
level, population items, the RNG state, counters) REJECTS unknown keys: a field this code does not
restore would be dropped silently, and the resumed run would not continue the one that wrote it
(a checkpoint of a newer gpsearch). Records that are carried over verbatim (cache entries, hall
of fame entries, logbook rows) and config.json's top level (informational: version, commit,
dates) TOLERATE extra keys, since they are kept unchanged and never interpreted; their known
fields are still checked. A new field of the checkpoint's top level must be added to
``checkpoint.FIELDS`` (and checked here if it holds trees or numbers).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from gpsearch.engine.primitives import build_pset, parse_expr, within_limits
from gpsearch.engine.result import PENALTY
from gpsearch.errors import UserError
from gpsearch.io import Refused, read_text

MAX_CONFIG_BYTES = 4 << 20  # config.json: settings, space, seed trees (kilobytes in practice)
MAX_CHECKPOINT_BYTES = 256 << 20  # ~400 B per evaluated tree: ~600,000 evaluations
MAX_LOG_LINE = 1 << 20  # one candidate record (expressions are at most 64 KiB each)
MAX_STRING = 4096  # a setting's string value (paths, specs)
OUTPUTS = ("hall_of_fame.csv", "best_tree.json", "progress.png", "summary.md")
# settings whose default is None: the type of a given value (others: any finite scalar)
NULLABLE = {"cache_dir": (str,), "ray_address": (str,), "eval_timeout": (int, float),
            "transfer_model": (str,)}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Where:
    """Builds one-line errors: ``cannot resume: FILE: FIELD ...``."""

    def __init__(self, path):
        self.path = Path(path)

    def fail(self, field: str, msg: str):
        where = f"{self.path}: {field}" if field else str(self.path)
        raise UserError(f"cannot resume: {where} {msg}")


def read_json(path, max_bytes: int):
    """Parse one JSON file of a run directory, refusing non-files, huge files and bad JSON."""
    w = _Where(path)
    try:
        text = read_text(path, max_bytes)
    except Refused as e:
        if e.reason == "too_big":
            w.fail("", f"is {e.size} bytes, more than the {max_bytes} a run directory file may "
                       "have")
        if e.reason == "unreadable":
            w.fail("", f"cannot be read ({e.error.strerror or e.error})")
        w.fail("", "is not UTF-8 text" if e.reason == "not_text" else "is not a regular file")
    try:
        return json.loads(text)
    except RecursionError:
        w.fail("", "is nested too deeply to be a gpsearch file")
    except ValueError as e:
        w.fail("", f"is not valid JSON ({str(e).splitlines()[0][:80]})")


# ---- value checks ---------------------------------------------------------------------------
def _dict(w, field, value) -> dict:
    if not isinstance(value, dict):
        w.fail(field, f"must be an object, got {_short(value)}")
    return value


def _list(w, field, value, lo: int = 0, hi: int | None = None) -> list:
    if not isinstance(value, list):
        w.fail(field, f"must be a list, got {_short(value)}")
    if len(value) < lo or (hi is not None and len(value) > hi):
        want = lo if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        w.fail(field, f"has {len(value)} items, expected {want}")
    return value


def _int(w, field, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        w.fail(field, f"must be an integer in [{lo}, {hi}], got {_short(value)}")
    return value


def _number(w, field, value, lo: float = -math.inf, hi: float = math.inf) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        w.fail(field, f"must be a finite number in [{lo:g}, {hi:g}], got {_short(value)}")
    return value


def _ppl(w, field, value) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        w.fail(field, f"must be a number or null, got {_short(value)}")


def _str(w, field, value, nonempty: bool = True) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        w.fail(field, f"must be a {'non-empty ' if nonempty else ''}string, got {_short(value)}")
    return value


def _opt_str(w, field, value) -> None:
    if value is not None:
        _str(w, field, value, nonempty=False)


def _keys(w, field, d: dict, required, allowed=None) -> None:
    missing = [k for k in required if k not in d]
    if missing:
        w.fail(field, f"lacks {', '.join(missing)}")
    if allowed is not None:
        unknown = sorted(str(k) for k in set(d) - set(allowed))
        if unknown:
            w.fail(field, f"has unknown field(s) {_short(', '.join(unknown))} (written by "
                   "another gpsearch version?)")


def _tree(w, field, expr, pset, space) -> str:
    _str(w, field, expr)
    try:
        ind = parse_expr(expr, pset)
    except UserError as e:
        w.fail(field, f"is not a tree of the search space {space.name}: {e}")
    if not within_limits(ind, space):
        w.fail(field, f"exceeds the search space limits (height {ind.height} / size {len(ind)}; "
               f"at most {space.max_height} / {space.max_size})")
    return expr


# ---- config.json ----------------------------------------------------------------------------
def check_config(data, path, defaults: dict) -> dict:
    """The run's config.json, checked (``defaults``: the search's DEFAULTS, names and types)."""
    from gpsearch.engine.space import SearchSpace

    w = _Where(path)
    _dict(w, "", data)
    _keys(w, "", data, ("settings", "space", "seed_exprs", "evaluation", "calibration"))
    settings = _dict(w, "settings", data["settings"])
    for name, value in settings.items():
        _setting(w, f"settings.{name}", name, value, defaults)
    space = SearchSpace.from_dict(_dict(w, "space", data["space"]), f"{path}: space")
    pset = build_pset(space)
    for i, expr in enumerate(_list(w, "seed_exprs", data["seed_exprs"], 0, 10_000)):
        _tree(w, f"seed_exprs[{i}]", expr, pset, space)
    ev = _dict(w, "evaluation", data["evaluation"])
    _keys(w, "evaluation", ev, ("max_windows", "seqlen"))
    _int(w, "evaluation.max_windows", ev["max_windows"], 1, 1 << 30)
    _int(w, "evaluation.seqlen", ev["seqlen"], 1, 1 << 30)
    _dict(w, "calibration", data["calibration"])
    return data


def _setting(w, field, name, value, defaults) -> None:
    if name not in defaults:
        w.fail(field, "is not a search setting (written by another gpsearch version?)")
    default = defaults[name]
    if value is None and (default is None or name in NULLABLE):
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 1 << 53
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        for v in value if ok else ():
            _string_ok(w, field, v)
    else:  # a None default: the type of the option if known, else any plain scalar
        kinds = NULLABLE.get(name, (str, int, float, bool))
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        w.fail(field, f"has the wrong type: {_short(value)} (default {_short(default)})")
    if isinstance(value, float) and not math.isfinite(value):
        w.fail(field, f"must be finite, got {value}")
    if isinstance(value, str):
        _string_ok(w, field, value)


def _string_ok(w, field, value: str) -> None:
    if "\0" in value or len(value) > MAX_STRING:
        w.fail(field, f"must be a string without NUL of at most {MAX_STRING} characters")


# ---- checkpoint.json, log.jsonl -------------------------------------------------------------
def check_resume(run_dir, config: dict, plan) -> dict | None:
    """Everything else ``--resume`` reads, against the validated config and the run's plan;
    returns the checked checkpoint (None when the run was killed in its first generation)."""
    for name in OUTPUTS:
        if run_dir.file(name).is_dir():
            _Where(run_dir.file(name)).fail("", "is a directory, not a file")
    searcher = _scratch_searcher(plan)
    state = None
    path = run_dir.file("checkpoint.json")
    if path.exists() or path.is_symlink():
        state = check_checkpoint(read_json(path, MAX_CHECKPOINT_BYTES), path, searcher)
    check_log(run_dir.file("log.jsonl"))
    return state


def _scratch_searcher(plan):
    from gpsearch.engine.loop import Searcher

    return Searcher(plan.space, None, plan.search, None, plan.seeds)


def check_checkpoint(data, path, searcher) -> dict:
    """A checkpoint of ``searcher``'s space, config and seeds (see the module doc)."""
    from gpsearch.engine import checkpoint
    from gpsearch.engine.loop import COUNTERS

    w, space, cfg, pset = _Where(path), searcher.space, searcher.cfg, searcher.pset
    _dict(w, "", data)
    _keys(w, "", data, checkpoint.FIELDS, checkpoint.FIELDS + checkpoint.OPTIONAL)
    for key, roots in _dict(w, "lineage", data.get("lineage", {})).items():
        _list(w, f"lineage[{_short(key)}]", roots, 0, 1 << 16)
        for r in roots:
            _str(w, f"lineage[{_short(key)}]", r)
    if data["version"] != checkpoint.VERSION:
        w.fail("version", f"is {_short(data['version'])}, this gpsearch reads {checkpoint.VERSION}")
    gen = _int(w, "generation", data["generation"], 0, 1 << 30)
    if data["config"] != checkpoint.plain(cfg.to_dict()):
        w.fail("config", "differs from the run's search config (config.json)")
    if data["space"] != checkpoint.plain(space.to_dict()):
        w.fail("space", f"differs from the run's search space {space.name} (config.json)")
    if data["seeds"] != list(searcher.seeds):
        w.fail("seeds", "differ from the run's seed trees (config.json)")
    _rng(w, data["rng"])

    cache = _dict(w, "cache", data["cache"])
    for key, rec in cache.items():
        f = f"cache[{_short(key)}]"
        _dict(w, f, rec)
        _keys(w, f, rec, ("expr", "fitness", "ppl", "error"))
        _tree(w, f + ".expr", rec["expr"], pset, space)
        _number(w, f + ".fitness", rec["fitness"], 0.0, PENALTY)
        _ppl(w, f + ".ppl", rec["ppl"])
        _opt_str(w, f + ".error", rec["error"])
        _opt_str(w, f + ".fingerprint", rec.get("fingerprint"))
        if "via" in rec and rec["via"] not in cache:
            w.fail(f + ".via", "is not a key of the cache")
        for j, st in enumerate(_list(w, f + ".stages", rec.get("stages", []), 0, 64)):
            _dict(w, f"{f}.stages[{j}]", st)
            _keys(w, f"{f}.stages[{j}]", st, ("windows", "score", "ppl"))
            _int(w, f"{f}.stages[{j}].windows", st["windows"], 1, 1 << 30)
            _number(w, f"{f}.stages[{j}].score", st["score"], 0.0, PENALTY)
    for fp, key in _dict(w, "fp_index", data["fp_index"]).items():
        if not isinstance(key, str) or key not in cache:
            w.fail(f"fp_index[{_short(fp)}]", f"refers to {_short(key)}, not a key of the cache")

    pop = _list(w, "population", data["population"], 1, cfg.population)
    for i, item in enumerate(pop):
        f = f"population[{i}]"
        _dict(w, f, item)
        _keys(w, f, item, ("expr", "fitness", "key"), ("expr", "fitness", "key"))
        _tree(w, f + ".expr", item["expr"], pset, space)
        _number(w, f + ".fitness", item["fitness"], 0.0, PENALTY)
        if not isinstance(item["key"], str) or item["key"] not in cache:
            w.fail(f + ".key", f"{_short(item['key'])} is not a key of the cache")

    for i, h in enumerate(_list(w, "hof", data["hof"], 0, cfg.hof_size)):
        f = f"hof[{i}]"
        _dict(w, f, h)
        _keys(w, f, h, ("key", "expr", "fitness", "ppl", "size", "gen"))
        if not isinstance(h["key"], str) or h["key"] not in cache:
            w.fail(f + ".key", f"{_short(h['key'])} is not a key of the cache")
        _tree(w, f + ".expr", h["expr"], pset, space)
        _number(w, f + ".fitness", h["fitness"], 0.0, PENALTY)
        _ppl(w, f + ".ppl", h["ppl"])
        _int(w, f + ".size", h["size"], 1, space.max_size)
        _int(w, f + ".gen", h["gen"], 0, gen)

    book = _list(w, "logbook", data["logbook"], gen + 1, gen + 1)
    for i, row in enumerate(book):
        f = f"logbook[{i}]"
        _dict(w, f, row)
        _keys(w, f, row, ("gen", "best", "median", "evaluated", "key_hits", "fp_hits",
                          "best_expr"))
        if row["gen"] != i:
            w.fail(f + ".gen", f"is {_short(row['gen'])}, expected {i}")
        _number(w, f + ".best", row["best"], 0.0, PENALTY)
        _number(w, f + ".median", row["median"], 0.0, PENALTY)
        for c in ("evaluated", "key_hits", "fp_hits"):
            _int(w, f"{f}.{c}", row[c], 0, 1 << 40)
        _str(w, f + ".best_expr", row["best_expr"])

    counters = _dict(w, "counters", data["counters"])
    _keys(w, "counters", counters, (), COUNTERS)
    for c, v in counters.items():
        _int(w, f"counters.{c}", v, 0, 1 << 40)
    return data


def _rng(w, state) -> None:
    """``random.getstate()`` as JSON: [3, 625 unsigned 32-bit ints (the last an index <= 624),
    gauss_next (null or a finite number)]."""
    from gpsearch.engine.checkpoint import rng_from_json

    _list(w, "rng", state, 3, 3)
    _int(w, "rng[0]", state[0], 3, 3)
    internal = _list(w, "rng[1]", state[1], 625, 625)
    for i, v in enumerate(internal):
        _int(w, f"rng[1][{i}]", v, 0, 624 if i == 624 else (1 << 32) - 1)
    if state[2] is not None:
        _number(w, "rng[2]", state[2])
    try:
        random.Random().setstate(rng_from_json(state))
    except (TypeError, ValueError, OverflowError) as e:
        w.fail("rng", f"is not a state of Python's random generator ({e})")


def check_log(path) -> None:
    """log.jsonl: one JSON object with an integer ``gen`` per line; only the last may be cut."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    w = _Where(path)
    if not path.is_file():
        w.fail("", "is not a regular file")
    bad = None  # (line number, why) of an unparseable line: allowed only as the last line
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(MAX_LOG_LINE + 1)
            if not raw:
                break
            n += 1
            if len(raw) > MAX_LOG_LINE:
                w.fail(f"line {n}", f"is longer than {MAX_LOG_LINE} bytes")
            if bad is not None:
                w.fail(f"line {bad}", "is not a JSON record (only the last line may be cut)")
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                bad = n
                continue
            if not isinstance(rec, dict):
                w.fail(f"line {n}", f"is not a record object: {_short(rec)}")
            _int(w, f"line {n} gen", rec.get("gen"), 0, 1 << 30)
