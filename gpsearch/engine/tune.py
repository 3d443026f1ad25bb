"""Constant tuning of a finished search's best trees (no torch): a cheap local search, as modern
symbolic regression does (PySR, Operon), on the FIRST stage's windows.

Coordinate descent over the tree's constant leaves: each constant in turn is multiplied by every
factor of ``FACTORS``; a change is kept when the first-stage score improves; ``rounds`` passes.
The tuned tree is then scored on every stage like any candidate, and it replaces the search's
best only if it is better on the LAST stage. Constants are written ``c<value>`` (6 decimals),
which the extended registry reads as numbers.
"""

from __future__ import annotations

import re

FACTORS = (0.5, 0.75, 0.9, 1.1, 1.33, 2.0)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*|[(),]")
_NUMBER = re.compile(r"^c(-?\d+(?:\.\d+)?)$")


def constant_slots(expr: str) -> list[tuple[int, float]]:
    """(token index, value) of every numeric constant leaf of a prefix expression."""
    out = []
    for i, tok in enumerate(_TOKEN.findall(expr)):
        m = _NUMBER.match(tok)
        if m:
            out.append((i, float(m.group(1))))
    return out


def _name(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "c" + ("0" if text in ("", "-0") else text)


def with_constant(expr: str, slot: int, value: float) -> str:
    """The expression with token ``slot`` (a constant) replaced by ``value``."""
    toks = _TOKEN.findall(expr)
    toks[slot] = _name(value)
    out = ""
    for tok in toks:
        out += tok if tok in "()" else (tok + " " if tok == "," else tok)
    return out.replace(" )", ")")


def tune_constants(expr: str, score, rounds: int = 2, max_abs: float = 1000.0) -> dict:
    """Coordinate descent on ``expr``'s constants. ``score(list of exprs) -> list of floats``
    (first-stage scores, lower is better; called once per constant per round with all its
    candidate values). Returns {"expr", "score", "start_score", "evaluated", "history"}."""
    slots = constant_slots(expr)
    best_expr, best = expr, score([expr])[0]
    start, evaluated, history = best, 1, []
    for _ in range(rounds):
        improved = False
        for slot, _ in slots:
            current = float(_NUMBER.match(_TOKEN.findall(best_expr)[slot]).group(1))
            values = sorted({round(current * f, 6) for f in FACTORS} - {round(current, 6)})
            values = [v for v in values if abs(v) <= max_abs and v != 0.0]
            cands = [with_constant(best_expr, slot, v) for v in values]
            if not cands:
                continue
            scores = score(cands)
            evaluated += len(cands)
            i = min(range(len(cands)), key=lambda j: (scores[j], cands[j]))
            if scores[i] < best:
                best_expr, best, improved = cands[i], scores[i], True
                history.append({"expr": best_expr, "score": best})
        if not improved:
            break
    return {"expr": best_expr, "score": best, "start_score": start, "evaluated": evaluated,
            "history": history}
