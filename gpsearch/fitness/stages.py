"""Staged fitness (no torch): which windows each stage scores, and a stage's score.

A stage is (tokens, fraction): the first ``tokens // seqlen`` validation windows, given to the best
``fraction`` of a generation's new candidates (by the previous stage's score; the first stage's
fraction is always 1). Stage k only scores the windows stage k-1 did not: per-window values add
up, so a stage's score is always over ALL its windows [0, n_k). Text form: "1024:1,4096:0.5".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpsearch.errors import UserError

FITNESS_KINDS = ("ppl", "kl")


@dataclass(frozen=True)
class Stage:
    windows: int
    fraction: float


def parse_stages(text: str, seqlen: int) -> list[Stage]:
    """'1024:1,4096:0.5,16384:0.25' -> stages of increasing windows (tokens // seqlen each)."""
    stages = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        tokens, _, frac = part.partition(":")
        try:
            tok, f = int(tokens), float(frac or 1)
        except ValueError:
            raise UserError(f"--stages: {part!r} is not TOKENS:FRACTION (e.g. 4096:0.5)") from None
        if tok < seqlen:
            raise UserError(f"--stages: {tok} tokens is less than one window of {seqlen}")
        if not 0 < f <= 1:
            raise UserError(f"--stages: fraction {f} must be in (0, 1]")
        stages.append(Stage(tok // seqlen, f))
    if not stages:
        raise UserError("--stages: give at least one TOKENS:FRACTION")
    if stages[0].fraction != 1:
        raise UserError("--stages: the first stage scores every candidate (fraction 1)")
    for a, b in zip(stages, stages[1:]):
        if b.windows <= a.windows or b.fraction > a.fraction:
            raise UserError("--stages: each stage needs more tokens and no larger fraction than "
                            "the one before")
    return stages


def stages_text(stages: list[Stage], seqlen: int) -> str:
    return ",".join(f"{s.windows * seqlen}:{s.fraction:g}" for s in stages)


def score_of(kind: str, values: list[float]) -> float:
    """A stage's score from per-window values: PPL = exp(mean nll); KL = mean kl (nats per
    token). Non-finite -> inf (the caller caps it)."""
    if kind not in FITNESS_KINDS:
        raise ValueError(f"unknown fitness {kind!r}")
    if not values:
        raise ValueError("no windows")
    mean = math.fsum(values) / len(values)
    if not math.isfinite(mean):
        return float("inf")
    if kind == "kl":
        return max(mean, 0.0)
    return math.exp(mean) if mean < 700 else float("inf")


def promoted(n_new: int, fraction: float) -> int:
    """How many of a generation's n_new candidates go on to a stage with this fraction (at least
    one, rounded down otherwise)."""
    return max(1, math.floor(n_new * fraction + 1e-9)) if n_new else 0
