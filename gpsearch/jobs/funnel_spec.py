"""The funnel file, read as untrusted data (``funnels/NAME.json``: the conditions, the hand
trees, the noise and the majority; JSON parsed by our own code). Every mistake is one
``UserError`` line, raised before any model is loaded. The run directory the funnel reads:
``jobs/funnel_run.py``; the flow that uses both: ``jobs/funnel.py``.

A funnel file::

    {"format": "gpsearch-funnel", "version": 1, "about": "...",
     "conditions": [{"condition": "sparsity=0.6"}, {"condition": "pattern=2:4"},
                    {"condition": "baseline", "text": "held-apart"}, ...],
     "hand_trees": ["wanda", "gblm", "ria_sqrt"],
     "noise": {"tree": "wanda", "seeds": [1], "floor": 0.001},
     "majority": 0.5}

``condition``: the text form of ``engine/conditions.py`` (W/X/G/H/S=FACTOR, nsamples=, seed=,
pattern=, sparsity=, ``+``-joined); ``text``: ``search`` (the first validation windows, the
default) or ``held-apart`` (the last ones, which no search stage scores); ``data``: another
corpus's validation split. ``hand_trees``: names of ``trees/``, tree files or expressions
(``gpsearch.tree.load_tree``). ``noise``: the tree whose PPL spread across calibration seeds is
each condition's noise, the extra seeds, the least noise. ``majority``: a tree must lead beyond
noise under MORE than this share of the voting conditions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from gpsearch.engine.conditions import Condition, parse_condition
from gpsearch.errors import UserError
from gpsearch.io import ROOT, read_json

FUNNELS_DIR = ROOT / "funnels"
FORMAT, VERSION = "gpsearch-funnel", 1
MAX_FILE_BYTES = 64 << 10
MAX_CONDITIONS = 32
MAX_HAND_TREES = 16
MAX_NOISE_SEEDS = 4
MAX_TEXT = 4096
TEXTS = ("search", "held-apart")
ALLOWED = ("rescale", "nsamples", "seed", "pattern", "sparsity")
FILE_KEYS = ("format", "version", "about", "conditions", "hand_trees", "noise", "majority")
CONDITION_KEYS = ("condition", "text", "data", "about")
NOISE_KEYS = ("tree", "seeds", "floor")


# ---- the funnel file ------------------------------------------------------------------------
@dataclass(frozen=True)
class FunnelCondition:
    """A condition of ``engine/conditions.py`` and the text it is measured on."""

    condition: Condition = Condition()
    text: str = "search"  # search: the first windows; held-apart: the last ones
    data: str | None = None  # another corpus's validation split (None: the run's)

    def label(self) -> str:
        parts = [] if self.condition == Condition() else [self.condition.label()]
        if self.text != "search":
            parts.append(f"text={self.text}")
        if self.data:
            parts.append(f"data={self.data}")
        return "+".join(parts) or "baseline"

    def with_seed(self, seed: int, run_seed: int) -> "FunnelCondition":
        """The same condition with the calibration seed ``seed`` (None when it is the run's)."""
        c = dataclasses.replace(self.condition, seed=None if seed == run_seed else seed)
        return dataclasses.replace(self, condition=c)

    def to_dict(self) -> dict:
        return {"label": self.label(), "condition": self.condition.to_dict(), "text": self.text,
                "data": self.data}


@dataclass(frozen=True)
class FunnelSpec:
    path: str
    conditions: tuple
    hand_trees: tuple
    noise_tree: str
    noise_seeds: tuple
    noise_floor: float
    majority: float
    data: dict  # the file as read (copied into the run directory)


def funnel_path(spec: str) -> Path:
    """A path to a .json file, or the bare name of a file in funnels/."""
    text = str(spec if spec is not None else "").strip()
    known = ", ".join(sorted(p.stem for p in FUNNELS_DIR.glob("*.json")))
    if not text:
        raise UserError(f"--conditions is empty (a .json funnel file, or one of: {known})")
    if text.endswith(".json") or "/" in text or os.sep in text:
        return Path(text)
    if not (FUNNELS_DIR / f"{text}.json").is_file():
        raise UserError(f"conditions {text!r}: no such funnel file (a .json path, or one of: "
                        f"{known})")
    return FUNNELS_DIR / f"{text}.json"


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def text_ok(v, nonempty: bool = True) -> bool:
    return (isinstance(v, str) and len(v) <= MAX_TEXT and "\0" not in v
            and (bool(v.strip()) or not nonempty))


def read_spec(spec: str) -> FunnelSpec:
    """The funnel file ``spec``, checked completely (every mistake one UserError line)."""
    from gpsearch.tree import load_tree, to_prefix

    path = funnel_path(spec)
    label = f"conditions file {path}"

    def bad(msg):
        return UserError(f"{label}: {msg}")

    try:
        data = read_json(path, label, MAX_FILE_BYTES)
    except RecursionError:
        raise bad("is nested too deeply to be a funnel file") from None
    if not isinstance(data, dict):
        raise bad("must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)[:200]} (allowed: {', '.join(FILE_KEYS)})")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise bad(f'needs "format": "{FORMAT}" and "version": {VERSION}')
    if "about" in data and not text_ok(data["about"], nonempty=False):
        raise bad(f"about must be text of at most {MAX_TEXT} characters")
    items = data.get("conditions")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_CONDITIONS:
        raise bad(f"conditions must be a list of 1 to {MAX_CONDITIONS} objects")
    conds, labels = [], set()
    for i, item in enumerate(items):
        where = f"conditions[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object such as {{\"condition\": \"sparsity=0.6\"}}")
        unknown = sorted(str(k) for k in item if k not in CONDITION_KEYS)
        if unknown:
            raise bad(f"{where}: unknown key(s) {', '.join(unknown)[:200]} (allowed: "
                      f"{', '.join(CONDITION_KEYS)})")
        if not text_ok(item.get("condition")) or len(item["condition"]) > 200:
            raise bad(f"{where}: condition must be text such as \"sparsity=0.6\" or "
                      "\"baseline\"")
        try:
            c = parse_condition(item["condition"], ALLOWED)
        except UserError as e:
            raise bad(f"{where}: {e}") from None
        if c.pattern is not None and c.pattern.strip().lower() != "unstructured" \
                and ":" not in c.pattern:
            raise bad(f"{where}: unknown pattern {c.pattern!r} (unstructured or N:M)")
        text = item.get("text", "search")
        if text not in TEXTS:
            raise bad(f"{where}: text must be one of {', '.join(TEXTS)} (got {str(text)[:40]!r})")
        corpus = item.get("data")
        if corpus is not None and not text_ok(corpus):
            raise bad(f"{where}: data must be a text spec (wiki, wikitext2, c4, a local file)")
        if "about" in item and not text_ok(item["about"], nonempty=False):
            raise bad(f"{where}: about must be text of at most {MAX_TEXT} characters")
        fc = FunnelCondition(c, text, corpus.strip() if corpus else None)
        if fc == FunnelCondition():
            raise bad(f"{where}: the run's own condition (baseline) is always scored and does "
                      "not vote; list only other conditions")
        if fc.label() in labels:
            raise bad(f"{where}: {fc.label()} is listed twice")
        labels.add(fc.label())
        conds.append(fc)
    hands = data.get("hand_trees")
    if not isinstance(hands, list) or not 1 <= len(hands) <= MAX_HAND_TREES \
            or not all(text_ok(h) for h in hands):
        raise bad(f"hand_trees must be a list of 1 to {MAX_HAND_TREES} tree names, files or "
                  "expressions (e.g. [\"wanda\", \"gblm\"])")
    seen = {}
    for h in hands:
        try:
            key = to_prefix(load_tree(h))
        except UserError as e:
            raise bad(f"hand_trees: {e}") from None
        if key in seen:
            raise bad(f"hand_trees: {h!r} is the same tree as {seen[key]!r}")
        seen[key] = h
    noise = data.get("noise", {})
    if not isinstance(noise, dict) or any(k not in NOISE_KEYS for k in noise):
        raise bad(f"noise must be an object with {', '.join(NOISE_KEYS)}")
    tree = noise.get("tree", "wanda")
    if not text_ok(tree):
        raise bad("noise.tree must be a tree name, file or expression")
    try:
        load_tree(tree)
    except UserError as e:
        raise bad(f"noise.tree: {e}") from None
    seeds = noise.get("seeds", [1])
    if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_NOISE_SEEDS or not all(
            is_int(s) and 0 <= s < 1 << 31 for s in seeds) or len(set(seeds)) != len(seeds):
        raise bad(f"noise.seeds must be a list of 1 to {MAX_NOISE_SEEDS} distinct calibration "
                  "seeds (integers >= 0)")
    floor = noise.get("floor", 0.001)
    if not is_num(floor) or not 0 <= floor < 0.5:
        raise bad("noise.floor must be a number in [0, 0.5) (a relative PPL change)")
    majority = data.get("majority", 0.5)
    if not is_num(majority) or not 0.5 <= majority < 1:
        raise bad("majority must be a number in [0.5, 1): a tree must lead beyond noise under "
                  "MORE than this share of the conditions")
    return FunnelSpec(str(path), tuple(conds), tuple(hands), tree, tuple(seeds), float(floor),
                      float(majority), data)
