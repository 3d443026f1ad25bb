"""Search spaces are data: ``search_spaces/*.yaml`` (terminals, operators, limits).

Read without torch (the search package never imports it): the operator names and arities are
written in the file itself (``unary`` / ``binary``) and tests check them against the tree
registry named by ``registry``; the search command checks them again at start-up.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from gpsearch.errors import UserError
from gpsearch.io import ROOT

SPACES_DIR = ROOT / "search_spaces"
REGISTRIES = ("prunerzero", "extended")
KEYS = {"name", "registry", "terminals", "unary", "binary", "init_height", "max_height",
        "max_size"}
HARD_MAX_HEIGHT, HARD_MAX_SIZE = 17, 200  # the tree package's own limits
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True)
class SearchSpace:
    """Terminals and operators the search may combine, and the size limits of its trees."""

    name: str
    registry: str
    terminals: tuple[str, ...]
    unary: tuple[str, ...]
    binary: tuple[str, ...]
    init_height: tuple[int, int]
    max_height: int
    max_size: int

    def arities(self) -> dict[str, int]:
        """{operator name: arity}."""
        return {**{n: 1 for n in self.unary}, **{n: 2 for n in self.binary}}

    def names(self) -> tuple[str, ...]:
        return self.unary + self.binary + self.terminals

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict, where: str = "search space") -> "SearchSpace":
        return _build(d, where)


def resolve_space_path(spec: str) -> Path:
    """A path to a .yaml/.yml file, or the bare name of a file in search_spaces/."""
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        path = SPACES_DIR / f"{spec}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(f"search space {spec!r} not found (a .yaml file, or one of: {known})")
    return path


def load_space(spec: str | Path) -> SearchSpace:
    """Read and check a search space file (one-line UserError on any problem)."""
    path = resolve_space_path(str(spec))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read search space {path}: {e}") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "syntax error"
        raise UserError(f"search space {path} is not valid YAML ({first})") from None
    return _build(data, str(path))


def _names(d: dict, key: str, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    value = d.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: '{key}' must be a list of names")
    if not value and not allow_empty:
        raise UserError(f"{where}: '{key}' is empty")
    for v in value:
        if not _NAME.fullmatch(v):
            raise UserError(f"{where}: {v!r} in '{key}' is not a valid name")
    return tuple(value)


def _int(d: dict, key: str, where: str, lo: int, hi: int) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise UserError(f"{where}: '{key}' must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _build(d, where: str) -> SearchSpace:
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a mapping of {', '.join(sorted(KEYS))}")
    unknown = set(d) - KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = KEYS - set(d)
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    if d["registry"] not in REGISTRIES:
        raise UserError(f"{where}: registry must be one of {', '.join(REGISTRIES)}")
    if not isinstance(d["name"], str) or not d["name"]:
        raise UserError(f"{where}: 'name' must be a non-empty string")
    terminals = _names(d, "terminals", where)
    unary = _names(d, "unary", where, allow_empty=True)
    binary = _names(d, "binary", where, allow_empty=True)
    every = terminals + unary + binary
    if len(set(every)) != len(every):
        dup = sorted({n for n in every if every.count(n) > 1})
        raise UserError(f"{where}: name(s) listed twice: {', '.join(dup)}")
    if not unary and not binary:
        raise UserError(f"{where}: no operators")
    init = d["init_height"]
    if (not isinstance(init, list) or len(init) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in init)):
        raise UserError(f"{where}: 'init_height' must be [min, max] integers")
    max_height = _int(d, "max_height", where, 1, HARD_MAX_HEIGHT)
    max_size = _int(d, "max_size", where, 3, HARD_MAX_SIZE)
    if not 0 <= init[0] <= init[1] <= max_height:
        raise UserError(f"{where}: need 0 <= init_height min <= max <= max_height")
    return SearchSpace(d["name"], d["registry"], terminals, unary, binary,
                       (init[0], init[1]), max_height, max_size)
