"""The CSV schedule of progressive three-tier block pruning (seed 004).

Columns (a header line is required, extra whitespace is ignored)::

    iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs

``dense``/``mid_2_4``/``topk`` are the target shares of ALL blocks after the iteration;
``dense_to_2_4`` is the fraction of the current DENSE blocks demoted in phase 1 and
``mid_2_4_to_topk`` the fraction of the 2:4 blocks (after phase 1) demoted in phase 2;
``epochs`` is the fine-tuning budget that follows. The two kinds of columns must agree: applying
the fractions to the previous row's shares (all DENSE before the first row) must give the row's
shares within ``TOL``. A row's implied sparsity is ``mid_2_4 * 0.5 + topk * (1 - k / bs^2)``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from gpsearch.errors import UserError
from gpsearch.methods.tiers_math import implied_sparsity

COLUMNS = ("iteration", "dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk", "epochs")
TOL = 0.011  # shares are usually written with two decimals


@dataclass(frozen=True)
class Step:
    iteration: int
    dense: float
    mid_2_4: float
    topk: float
    dense_to_2_4: float
    mid_2_4_to_topk: float
    epochs: int

    def sparsity(self, bs: int = 16, k: int = 10) -> float:
        return implied_sparsity(self.mid_2_4, self.topk, bs, k)

    def to_dict(self) -> dict:
        return asdict(self)


def _number(text: str, kind, where: str):
    try:
        return kind(text.strip())
    except ValueError:
        raise UserError(f"{where}: {text.strip()!r} is not a valid {kind.__name__}") from None


def parse_schedule(text: str, source: str = "schedule") -> list[Step]:
    """Parse and validate the CSV text of a schedule."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{source}: empty schedule")
    header = tuple(c.strip().lower() for c in rows[0])
    if header != COLUMNS:
        raise UserError(f"{source}: header must be {','.join(COLUMNS)} (got {','.join(header)})")
    steps = []
    for n, row in enumerate(rows[1:], start=2):
        where = f"{source} line {n}"
        if len(row) != len(COLUMNS):
            raise UserError(f"{where}: expected {len(COLUMNS)} columns, got {len(row)}")
        vals = [_number(c, int if name in ("iteration", "epochs") else float, f"{where} {name}")
                for name, c in zip(COLUMNS, row)]
        steps.append(Step(*vals))
    validate(steps, source)
    return steps


def load_schedule(path: str | Path) -> list[Step]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"schedule file not found: {path}")
    return parse_schedule(p.read_text(encoding="utf-8"), str(p))


def next_shares(prev: tuple[float, float, float], to_mid: float, to_topk: float):
    """Shares (dense, mid, topk) after applying one iteration's demotion fractions."""
    d, m, t = prev
    moved = to_mid * d
    m1 = m + moved
    moved2 = to_topk * m1
    return d - moved, m1 - moved2, t + moved2


def validate(steps: list[Step], source: str = "schedule") -> None:
    """Numbering 1..n, shares in [0, 1] summing to 1, fractions in [0, 1], epochs >= 0, one-way
    tiers, and fractions consistent with the shares."""
    if not steps:
        raise UserError(f"{source}: the schedule has no rows")
    prev = (1.0, 0.0, 0.0)
    for i, s in enumerate(steps, start=1):
        where = f"{source} iteration {s.iteration}"
        if s.iteration != i:
            raise UserError(f"{source}: iterations must be numbered 1, 2, ... in order "
                            f"(row {i} says {s.iteration})")
        shares = (s.dense, s.mid_2_4, s.topk)
        if any(not 0.0 <= v <= 1.0 for v in shares + (s.dense_to_2_4, s.mid_2_4_to_topk)):
            raise UserError(f"{where}: shares and fractions must lie in [0, 1]")
        if abs(sum(shares) - 1.0) > 1e-6:
            raise UserError(f"{where}: dense + mid_2_4 + topk = {sum(shares):g}, not 1")
        if s.epochs < 0:
            raise UserError(f"{where}: epochs must be >= 0")
        if s.dense > prev[0] + TOL or s.topk < prev[2] - TOL:
            raise UserError(f"{where}: tiers are one-way (dense may only shrink, topk only grow)")
        implied = next_shares(prev, s.dense_to_2_4, s.mid_2_4_to_topk)
        if any(abs(a - b) > TOL for a, b in zip(implied, shares)):
            got = "/".join(f"{v:.3f}" for v in implied)
            raise UserError(f"{where}: fractions {s.dense_to_2_4:g} and {s.mid_2_4_to_topk:g} "
                            f"applied to the previous shares give {got}, not "
                            f"{s.dense:g}/{s.mid_2_4:g}/{s.topk:g}")
        prev = shares


def fractions_for(shares: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """The (dense_to_2_4, mid_2_4_to_topk) fractions that move from all-DENSE through the given
    target shares: the inverse of ``next_shares`` (used to write consistent schedules)."""
    out, (d, m, t) = [], (1.0, 0.0, 0.0)
    for d1, m1, t1 in shares:
        x = (d - d1) / d if d > 0 else 0.0
        mid_after = m + (d - d1)
        y = (t1 - t) / mid_after if mid_after > 0 else 0.0
        out.append((x, y))
        d, m, t = d1, m1, t1
    return out


def to_csv(steps: list[Step]) -> str:
    lines = [",".join(COLUMNS)]
    for s in steps:
        lines.append(f"{s.iteration},{s.dense:g},{s.mid_2_4:g},{s.topk:g},{s.dense_to_2_4:.6g},"
                     f"{s.mid_2_4_to_topk:.6g},{s.epochs}")
    return "\n".join(lines) + "\n"
