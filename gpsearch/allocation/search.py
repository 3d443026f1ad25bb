"""EvoPress-style search of a layer-wise sparsity allocation (pure Python: no torch, no ray).

Genome: one integer level per decoder block; block i's sparsity is target + step * level_i.
Every block holds the same number of weights in the models gpsearch prunes, so the total is the
target exactly when the levels sum to zero; the only mutation keeps that sum: it moves one
level from one block to another (as many times as the mutation count says), within
[-max_level, max_level] and within [0, hi] in sparsity. ``allocation.exact_ratios`` then fixes
the rounding of the masks (and any difference in block sizes).

Attention / MLP split (``Grid.split_max`` > 0): one more integer gene, ``split``. Inside every
block the attention linears get ``step * split`` more sparsity and the MLP linears
``step * split * A_i / M_i`` less (A_i, M_i: the block's attention and MLP weights), so a block's
total, and the model's, never change. A mutation moves it by one with probability ``p_split``.

Seeds (``seed_candidates``): instead of starting from the uniform allocation alone, the first
generation scores a small family of depth ramps (block i at target + slope * (2i / (B - 1) - 1),
on the grid) times a few splits with the staged fitness, and the best becomes the parent (the
uniform allocation, scored on every stage, is the reference it must beat).

Joint search over a pool of metric trees (a two-part genome: a tree index + the levels): with
``trees`` > 1, a mutation replaces the tree by another of the pool with probability ``p_tree``
(the levels kept), else it moves levels; ``score_windows`` then also gets ``tree=index``.

One generation ((1 + lambda), elitist): ``offspring`` mutants of the parent are scored on the
first stage's windows; the best ``fraction`` of them go on to the next stage's extra windows,
and so on (``search.stages``: per-window values add up, so a stage's score is over all its
windows); the best candidate on the last stage replaces the parent if it beats the parent's
last-stage score (the parent's scores are kept, never recomputed).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from gpsearch.errors import UserError
from gpsearch.fitness.stages import Stage, promoted, score_of

# score_windows(levels, first_window, end_window) -> per-window values of that range
ScoreWindows = Callable[[tuple, int, int], list]


@dataclass(frozen=True)
class Grid:
    target: float
    step: float
    max_level: int
    blocks: int
    hi: float = 0.99
    split_max: int = 0  # |split| allowed; 0: no attention / MLP split gene
    mlp_shift: tuple = ()  # per block A_i / M_i (the MLP's shift per unit of attention shift)

    def __post_init__(self):
        if self.split_max and len(self.mlp_shift) != self.blocks:
            raise ValueError("a split grid needs one A/M ratio per block")
        if not 0 <= self.target < 1:
            raise UserError(f"sparsity must be in [0, 1), got {self.target}")
        if not 0 < self.step < 0.5:
            raise UserError(f"--step must be in (0, 0.5), got {self.step}")
        if self.max_level < 1 or self.blocks < 2:
            raise UserError("an allocation search needs --max-shift >= --step and >= 2 blocks")

    def sparsity(self, level: int) -> float:
        return self.target + self.step * level

    def allowed(self, level: int) -> bool:
        return abs(level) <= self.max_level and 0.0 <= self.sparsity(level) <= self.hi

    def ratios(self, levels) -> list[float]:
        return [self.sparsity(lv) for lv in levels]

    def kind_ratios(self, levels, split: int) -> tuple[list[float], list[float]]:
        """(attention, MLP) sparsity per block."""
        base = self.ratios(levels)
        d = self.step * split
        return ([b + d for b in base],
                [b - d * r for b, r in zip(base, self.mlp_shift or [0.0] * self.blocks)])

    def block_ok(self, i: int, level: int, split: int = 0) -> bool:
        if not self.allowed(level):
            return False
        if not split:
            return True
        s, d = self.sparsity(level), self.step * split
        return 0.0 <= s + d <= self.hi and 0.0 <= s - d * self.mlp_shift[i] <= self.hi

    def valid(self, levels, split: int = 0) -> bool:
        return (sum(levels) == 0 and abs(split) <= self.split_max
                and all(self.block_ok(i, v, split) for i, v in enumerate(levels)))


def mutate(levels: tuple, grid: Grid, rng: random.Random, moves: int = 1,
           split: int = 0) -> tuple:
    """``moves`` times: one level from a random block to another (the sum never changes)."""
    out = list(levels)
    for _ in range(moves):
        for _attempt in range(100):
            a, b = rng.sample(range(len(out)), 2)
            if grid.block_ok(a, out[a] + 1, split) and grid.block_ok(b, out[b] - 1, split):
                out[a] += 1
                out[b] -= 1
                break
    return tuple(out)


@dataclass
class Candidate:
    levels: tuple
    values: list = field(default_factory=list)  # per-window values scored so far
    stage_scores: list = field(default_factory=list)  # score after each stage reached
    tree: int = 0  # index in the pool of metric trees (joint search)
    split: int = 0  # attention / MLP split level (Grid.split_max > 0)


def mutate_candidate(parent: Candidate, grid: Grid, rng: random.Random, max_moves: int,
                     trees: int = 1, p_tree: float = 0.0, p_split: float = 0.0) -> Candidate:
    """A child: another tree of the pool (probability ``p_tree``, when there are several), a
    split moved by one (probability ``p_split``, when the grid has a split), or 1..``max_moves``
    level moves. With one tree and no split the random draws are those of ``mutate`` alone."""
    if trees > 1 and rng.random() < p_tree:
        other = rng.choice([i for i in range(trees) if i != parent.tree])
        return Candidate(parent.levels, tree=other, split=parent.split)
    if grid.split_max and rng.random() < p_split:
        for d in rng.sample((-1, 1), 2):
            if grid.valid(parent.levels, parent.split + d):
                return Candidate(parent.levels, tree=parent.tree, split=parent.split + d)
    moves = rng.randint(1, max_moves)
    return Candidate(mutate(parent.levels, grid, rng, moves, parent.split), tree=parent.tree,
                     split=parent.split)


def ramp_levels(grid: Grid, slope: float) -> tuple:
    """Block i at target + slope * (2i / (B - 1) - 1), rounded to the grid and clipped to it;
    the second half mirrors the first with the opposite sign, so the levels sum to zero (None
    when a block leaves the grid's sparsity range)."""
    n = grid.blocks
    half = [max(-grid.max_level, min(grid.max_level, round(slope / grid.step
                                                           * (2 * i / (n - 1) - 1))))
            for i in range(n // 2)]
    lv = half + [0] * (n % 2) + [-v for v in reversed(half)]
    return tuple(lv) if all(grid.allowed(v) for v in lv) else None


def seed_candidates(grid: Grid, slopes, splits, tree: int = 0) -> list[Candidate]:
    """The ramps x splits that fit the grid, without duplicates and without the uniform one."""
    out, seen = [], {(tuple([0] * grid.blocks), 0)}
    for slope in slopes:
        lv = ramp_levels(grid, slope)
        for sp in splits:
            if lv is None or (lv, sp) in seen or not grid.valid(lv, sp):
                continue
            seen.add((lv, sp))
            out.append(Candidate(lv, tree=tree, split=sp))
    return out


def _scores(score_windows: ScoreWindows, c: Candidate, a: int, b: int, trees: int) -> list:
    kw = {"tree": c.tree} if trees > 1 else {}
    if c.split:
        kw["split"] = c.split
    return list(score_windows(c.levels, a, b, **kw))


def score_stages(cands: list[Candidate], stages: list[Stage], kind: str,
                 score_windows: ScoreWindows, trees: int = 1) -> None:
    """Staged scoring in place: all on stage 1, then the best ``fraction`` on each next stage
    (only the windows they do not have yet are scored)."""
    alive = list(cands)
    for k, st in enumerate(stages):
        if k:
            n = promoted(len(cands), st.fraction)
            alive = sorted(alive, key=lambda c: c.stage_scores[k - 1])[:n]
        for c in alive:
            if len(c.values) < st.windows:
                c.values += _scores(score_windows, c, len(c.values), st.windows, trees)
            c.stage_scores.append(score_of(kind, c.values[:st.windows]))


def score_fully(c: Candidate, stages: list[Stage], kind: str, score_windows: ScoreWindows,
                trees: int = 1) -> Candidate:
    c.stage_scores, c.values = [], []
    for st in stages:
        c.values += _scores(score_windows, c, len(c.values), st.windows, trees)
        c.stage_scores.append(score_of(kind, c.values[:st.windows]))
    return c


def seed_generation(uniform: Candidate, seeds: list[Candidate], stages: list[Stage], kind: str,
                    score_windows: ScoreWindows, trees: int = 1) -> tuple[Candidate, dict]:
    """Generation 0 of a seeded search: the uniform allocation on every stage, the seeds staged;
    the best on the last stage becomes the parent."""
    last = len(stages) - 1
    score_fully(uniform, stages, kind, score_windows, trees)
    score_stages(seeds, stages, kind, score_windows, trees)
    finals = [c for c in seeds if len(c.stage_scores) > last]
    best = min(finals, key=lambda c: c.stage_scores[last]) if finals else uniform
    new = best if best.stage_scores[last] < uniform.stage_scores[last] else uniform
    rec = {"parent_score": uniform.stage_scores[last], "best_child_score": best.stage_scores[last],
           "improved": new is not uniform, "seeds": len(seeds),
           "first_stage_median": _median([c.stage_scores[0] for c in seeds] or [0.0]),
           "score": new.stage_scores[last], "levels": list(new.levels), "split": new.split}
    if trees > 1:
        rec["tree"] = new.tree
    return new, rec


def generation(parent: Candidate, grid: Grid, stages: list[Stage], kind: str,
               score_windows: ScoreWindows, rng: random.Random, offspring: int = 16,
               max_moves: int = 3, trees: int = 1, p_tree: float = 0.0,
               p_split: float = 0.0) -> tuple[Candidate, dict]:
    """One (1 + offspring) generation; returns (the new parent, a log record)."""
    last = len(stages) - 1
    if len(parent.stage_scores) <= last:  # the first parent is scored on every stage
        score_fully(parent, stages, kind, score_windows, trees)
    kids = [mutate_candidate(parent, grid, rng, max_moves, trees, p_tree, p_split)
            for _ in range(offspring)]
    score_stages(kids, stages, kind, score_windows, trees)
    finals = [c for c in kids if len(c.stage_scores) > last]
    best = min(finals, key=lambda c: c.stage_scores[last])
    improved = best.stage_scores[last] < parent.stage_scores[last]
    new = best if improved else parent
    rec = {"parent_score": parent.stage_scores[last], "best_child_score": best.stage_scores[last],
           "improved": improved, "first_stage_median": _median([c.stage_scores[0] for c in kids]),
           "score": new.stage_scores[last], "levels": list(new.levels)}
    if trees > 1:
        rec["tree"] = new.tree
    if grid.split_max:
        rec["split"] = new.split
    return new, rec


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def check_levels(levels, grid: Grid) -> tuple:
    """Levels read back from a state file: integers, allowed, summing to zero."""
    if not isinstance(levels, list) or len(levels) != grid.blocks or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in levels):
        raise UserError(f"state: expected {grid.blocks} integer levels")
    if sum(levels) != 0 or not all(grid.allowed(v) for v in levels):
        raise UserError("state: levels outside the grid or not summing to zero")
    return tuple(levels)


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
