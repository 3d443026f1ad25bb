"""Checkpoints as plain JSON data, written atomically after every generation.

A checkpoint holds everything the next generation depends on: the population (expression
strings with fitness and key), the master RNG state (``random.getstate()`` as JSON lists), the
fitness cache and fingerprint index, the hall of fame, the logbook, the counters and the
generation number, plus the search config and space for a self-describing record. Never pickled
DEAP objects (unpickling one replaces ``creator`` classes and runs code). Restoring it into a
searcher built with the same space and config continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpsearch.engine.loop import COUNTERS, Searcher
from gpsearch.engine.primitives import parse_expr
from gpsearch.errors import UserError
from gpsearch.io import write_text

VERSION = 1
FIELDS = ("version", "generation", "config", "space", "seeds", "rng", "population", "cache",
          "fp_index", "hof", "logbook", "counters")  # what ``capture`` writes (rundir_check)
OPTIONAL = ("lineage",)  # written since the staged search; older checkpoints lack it


def plain(obj):
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def rng_to_json(state: tuple) -> list:
    """``random.getstate()`` -> [version, [625 ints], gauss_next] (JSON-able)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (int(version), tuple(int(v) for v in internal), gauss)


def capture(searcher: Searcher) -> dict:
    """The searcher's full state as plain data."""
    return {
        "version": VERSION,
        "generation": searcher.generation,
        "config": searcher.cfg.to_dict(),
        "space": searcher.space.to_dict(),
        "seeds": list(searcher.seeds),
        "rng": rng_to_json(searcher.rng.getstate()),
        "population": [{"expr": str(ind), "fitness": ind.fitness, "key": ind.key}
                       for ind in searcher.population],
        "cache": searcher.cache,
        "fp_index": searcher.fp_index,
        "hof": searcher.hof,
        "lineage": searcher.lineage,
        "logbook": searcher.logbook,
        "counters": searcher.counters,
    }


def restore(searcher: Searcher, data: dict) -> Searcher:
    """Load a captured state into a searcher built with the same space and config."""
    if data.get("version") != VERSION:
        raise UserError(f"checkpoint version {data.get('version')!r} is not {VERSION}")
    same = (data["config"] == plain(searcher.cfg.to_dict())
            and data["space"] == plain(searcher.space.to_dict()))
    if not same:
        raise UserError("checkpoint was written with another search config or search space")
    population = []
    for item in data["population"]:
        ind = parse_expr(item["expr"], searcher.pset)
        ind.fitness, ind.key = float(item["fitness"]), item["key"]
        population.append(ind)
    searcher.population = population
    searcher.generation = int(data["generation"])
    searcher.seeds = list(data["seeds"])
    searcher.rng.setstate(rng_from_json(data["rng"]))
    searcher.cache = dict(data["cache"])
    searcher.fp_index = dict(data["fp_index"])
    searcher.hof = list(data["hof"])
    searcher.lineage = {str(k): [str(r) for r in v] for k, v in data.get("lineage", {}).items()}
    searcher.logbook = list(data["logbook"])
    searcher.counters = {c: int(data["counters"].get(c, 0)) for c in COUNTERS}
    return searcher


def write_json_atomic(path: str | Path, obj) -> None:
    """Write compact JSON to ``path`` atomically, on disk (fsync) before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj, separators=(",", ":")), fsync=True)


def save(path: str | Path, searcher: Searcher) -> None:
    write_json_atomic(path, capture(searcher))


def load_plain(path: str | Path):
    """Any JSON file of a run directory (one-line UserError if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def load(path: str | Path) -> dict:
    data = load_plain(path)
    if not isinstance(data, dict) or "generation" not in data:
        raise UserError(f"{path} is not a gpsearch checkpoint")
    return data
