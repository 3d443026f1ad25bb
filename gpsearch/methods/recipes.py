"""Baseline recipes: ``baselines/*.yaml`` at the top level of the repository, one file per
baseline (what ``trees/`` is for metrics and ``search_spaces/`` for spaces).

A recipe is plain data, read with ``yaml.safe_load`` and checked here:

    method: sparsegpt          # a method of ``gpsearch compare`` (required)
    description: ...           # optional, one line
    knobs:                     # every knob of the method with its value (optional)
      blocksize: 128
    sparsities: [0.5, 0.7]     # optional: run at these instead of compare's --sparsity

Any other key, a knob the method does not have, or a wrong type is a one-line error. In
``gpsearch compare --methods`` a recipe is a path ending in .yaml/.yml, or a folder (every recipe
in it, sorted by name); the row's method name is the file's stem (``baselines/sparsegpt-extreme
.yaml`` -> ``sparsegpt-extreme``), and ``--option NAME.KNOB=VALUE`` still overrides a knob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpsearch.errors import UserError
from gpsearch.io import ROOT

BASELINES_DIR = ROOT / "baselines"
KEYS = {"method", "description", "knobs", "sparsities"}


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    path: str
    description: str = ""
    knobs: dict = field(default_factory=dict)
    sparsities: tuple = ()


def is_recipe_spec(spec: str) -> bool:
    p = Path(spec)
    return p.suffix in (".yaml", ".yml") or (p.is_dir() and any(recipe_files(p)))


def recipe_files(folder: Path) -> list[Path]:
    return sorted(list(folder.glob("*.yaml")) + list(folder.glob("*.yml")))


def expand(spec: str) -> list[Path]:
    """A recipe path or a folder of recipes -> the recipe files."""
    p = Path(spec)
    if p.is_dir():
        files = recipe_files(p)
        if not files:
            raise UserError(f"{spec}: no .yaml recipes in this folder")
        return files
    if not p.is_file():
        raise UserError(f"recipe {spec} not found")
    return [p]


def _scalar(value, where: str):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return tuple(value)  # e.g. wanda's alpha bracket
    raise UserError(f"{where}: knob values are numbers, strings, booleans or lists of numbers")


def load_recipe(path: str | Path, known_knobs=None) -> Recipe:
    """Parse and check one recipe. ``known_knobs(method) -> set | None``: the method's knob
    names (None: not checked); unknown methods are caught by the caller's method registry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"recipe {path}: cannot read it ({e})") from None
    except yaml.YAMLError as e:
        raise UserError(f"recipe {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"recipe {path}: expected a mapping with at least 'method'")
    unknown = set(map(str, data)) - KEYS
    if unknown:
        raise UserError(f"recipe {path}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(allowed: {', '.join(sorted(KEYS))})")
    method = data.get("method")
    if not isinstance(method, str) or not method:
        raise UserError(f"recipe {path}: 'method' must name a compare method")
    knobs = data.get("knobs") or {}
    if not isinstance(knobs, dict) or not all(isinstance(k, str) for k in knobs):
        raise UserError(f"recipe {path}: 'knobs' must map knob names to values")
    knobs = {k: _scalar(v, f"recipe {path}, knob {k}") for k, v in knobs.items()}
    allowed = known_knobs(method) if known_knobs else None
    if allowed is not None:
        bad = set(knobs) - set(allowed)
        if bad:
            raise UserError(f"recipe {path}: unknown knob(s) {', '.join(sorted(bad))} for "
                            f"{method} (its knobs: {', '.join(sorted(allowed)) or 'none'})")
    sparsities = data.get("sparsities") or ()
    if not isinstance(sparsities, (list, tuple)) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s < 1
            for s in sparsities):
        raise UserError(f"recipe {path}: 'sparsities' must be a list of fractions in [0, 1)")
    desc = data.get("description") or ""
    if not isinstance(desc, str):
        raise UserError(f"recipe {path}: 'description' must be text")
    return Recipe(path.stem, method, str(path), desc, knobs, tuple(float(s) for s in sparsities))
