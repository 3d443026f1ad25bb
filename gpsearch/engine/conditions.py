"""Evaluation conditions (no torch): the perturbations a robustness report or a multi-condition
fitness scores a tree under, as plain data parsed from text.

A condition is written as ``+``-joined parts (each part changes one thing from the baseline):

    baseline            nothing changed
    W=0.25, X=4, G=4    that terminal's feature tensor multiplied by the factor before the tree is
                        evaluated (S = sqrt(X) follows X); also H=, S=
    nsamples=32         the features of another calibration size (same data, seqlen, seed)
    seed=1              the features of another calibration sampling seed
    pattern=2:4         another sparsity pattern (robustness report only)
    sparsity=0.6        another sparsity (robustness report only)
    model=SPEC          another model (multi-model fitness)

e.g. ``G=4+X=0.25`` rescales both. A list of conditions is comma-separated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gpsearch.errors import UserError

TERMINALS = ("W", "X", "G", "H", "S")
_NUM = re.compile(r"^[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?$", re.I)


@dataclass(frozen=True)
class Condition:
    rescale: tuple = ()  # ((terminal, factor), ...) sorted by terminal
    nsamples: int | None = None
    seed: int | None = None
    pattern: str | None = None
    sparsity: float | None = None
    model: str | None = None

    @property
    def factors(self) -> dict:
        return dict(self.rescale)

    def label(self) -> str:
        parts = [f"{t}={f:g}" for t, f in self.rescale]
        for name in ("nsamples", "seed", "pattern", "sparsity", "model"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}={v:g}" if isinstance(v, float) else f"{name}={v}")
        return "+".join(parts) or "baseline"

    def changes_features(self) -> bool:
        return self.nsamples is not None or self.seed is not None

    def to_dict(self) -> dict:
        return {"label": self.label(), "rescale": self.factors, "nsamples": self.nsamples,
                "seed": self.seed, "pattern": self.pattern, "sparsity": self.sparsity,
                "model": self.model}


def parse_condition(text: str, allowed: tuple[str, ...] | None = None) -> Condition:
    """One condition from its text form (see the module docstring). ``allowed``: the part names
    accepted (terminals count as "rescale"); others are a user error."""
    text = str(text).strip()
    if text.lower() in ("", "baseline"):
        return Condition()
    rescale, fields = {}, {}
    for part in text.split("+"):
        name, eq, value = part.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not value:
            raise UserError(f"condition {text!r}: {part.strip()!r} is not NAME=VALUE "
                            "(e.g. G=4, nsamples=32, seed=1, pattern=2:4)")
        kind = "rescale" if name in TERMINALS else name
        if allowed is not None and kind not in allowed:
            raise UserError(f"condition {text!r}: {name} cannot be changed here (allowed: "
                            f"{', '.join(allowed)})")
        if (kind == "rescale" and name in rescale) or kind in fields:
            raise UserError(f"condition {text!r}: {name} given twice")
        if kind == "rescale":
            f = _number(value, text)
            if not (f > 0 and math.isfinite(f)):
                raise UserError(f"condition {text!r}: a rescaling factor must be a positive "
                                f"finite number (got {value})")
            rescale[name] = f
        elif kind in ("nsamples", "seed"):
            if not value.isdigit() or (kind == "nsamples" and int(value) < 1):
                raise UserError(f"condition {text!r}: {name} must be a "
                                f"{'positive' if kind == 'nsamples' else 'non-negative'} integer")
            fields[kind] = int(value)
        elif kind == "sparsity":
            s = _number(value, text)
            if not 0 <= s < 1:
                raise UserError(f"condition {text!r}: sparsity must be in [0, 1)")
            fields[kind] = s
        elif kind in ("pattern", "model"):
            fields[kind] = value
        else:
            raise UserError(f"condition {text!r}: unknown part {name!r} (use W/X/G/H/S=FACTOR, "
                            "nsamples=, seed=, pattern=, sparsity=, model=)")
    return Condition(rescale=tuple(sorted(rescale.items())), **fields)


def parse_conditions(text: str, allowed: tuple[str, ...] | None = None) -> list[Condition]:
    """A comma-separated list of conditions; duplicates are dropped (first kept)."""
    out = [parse_condition(t, allowed) for t in str(text).split(",") if t.strip()]
    return list(dict.fromkeys(out))


def _number(value: str, text: str) -> float:
    if not _NUM.match(value):
        raise UserError(f"condition {text!r}: {value!r} is not a number")
    return float(value)


def default_conditions(terminals: set[str], factors=(0.25, 4.0), nsamples: int = 32,
                       seed: int = 1, patterns=("2:4",), sparsities=(0.6,)) -> list[Condition]:
    """The robustness report's default list: baseline, each used terminal of W, X, G, H rescaled
    by each factor, another calibration size and seed, other patterns and sparsities."""
    out = [Condition()]
    for t in [t for t in ("W", "X", "G", "H") if t in terminals or (t == "X" and "S" in terminals)]:
        out += [Condition(rescale=((t, float(f)),)) for f in factors]
    if terminals & {"X", "S", "G", "H"}:
        out += [Condition(nsamples=nsamples), Condition(seed=seed)]
    out += [Condition(pattern=p) for p in patterns] + [Condition(sparsity=s) for s in sparsities]
    return out


def _integers(text: str, option: str, least: int) -> list[int]:
    """Comma-separated integers >= ``least`` (empty parts skipped); a bad one is a UserError."""
    out = []
    for part in str(text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < least:
            kind = "non-negative" if least == 0 else f">= {least}"
            raise UserError(f"{option}: {part!r} is not an integer {kind}")
        out.append(int(part))
    return out


def fitness_conditions(models: str, rescale: str, seeds: str, main_model: str,
                       nsamples: str = "", main_nsamples: int | None = None) -> list[Condition]:
    """The conditions of a multi-condition fitness: every model of ``models`` (comma-separated;
    empty: ``main_model`` alone) x (baseline, each rescaling of ``rescale``, each calibration seed
    of ``seeds``, each calibration size of ``nsamples`` other than ``main_nsamples``, the
    baseline's own). The main model's conditions carry no model name. One baseline condition
    means the plain single-condition fitness."""
    names = [m.strip() for m in str(models or "").split(",") if m.strip()] or [main_model]
    variants = [Condition()] + parse_conditions(rescale or "", ("rescale",))
    variants += [Condition(seed=v) for v in _integers(seeds, "--fitness-seeds", 0)]
    variants += [Condition(nsamples=v) for v in _integers(nsamples, "--fitness-nsamples", 1)
                 if v != main_nsamples]
    out = [Condition(rescale=v.rescale, seed=v.seed, nsamples=v.nsamples,
                     model=None if m == main_model else m)
           for m in dict.fromkeys(names) for v in variants]
    return list(dict.fromkeys(out))
