"""Does the selection fitness (the first stage) rank trees as the last stage does? Pure.

From a run's evaluation records (the searcher's cache, or log.jsonl records): the trees that
reached the last stage, ranked by their first-stage and by their last-stage score (Spearman,
average ranks for ties), overall and among the 10 best by the last stage, and where a tree (the
reported one) ranks at the first stage among every evaluated tree.
"""

from __future__ import annotations


def ranks(v: list[float]) -> list[float]:
    """0-based average ranks (ties share the mean of their ranks)."""
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation; None for fewer than 3 pairs or a constant side."""
    if len(a) != len(b):
        raise ValueError("spearman needs two lists of equal length")
    if len(a) < 3:
        return None
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else None


def stage_agreement(records: dict, expr: str | None = None, best: int = 10) -> dict | None:
    """records: tree -> {"stages": [{"score": ...}, ...]} (trees without stages are skipped).
    None when no tree has more than one stage."""
    trees = {e: [s["score"] for s in r["stages"]] for e, r in records.items()
             if r.get("stages")}
    depth = max((len(s) for s in trees.values()), default=0)
    if depth < 2:
        return None
    full = {e: s for e, s in trees.items() if len(s) == depth}
    by_last = sorted(full, key=lambda e: (full[e][-1], e))
    top = by_last[:best]
    by_first = sorted(trees, key=lambda e: (trees[e][0], e))
    out = {"evaluated": len(trees), "reached_last_stage": len(full), "stages": depth,
           "spearman": spearman([full[e][0] for e in by_last], [full[e][-1] for e in by_last]),
           f"spearman_best{best}": spearman([full[e][0] for e in top],
                                            [full[e][-1] for e in top]),
           "last_stage_best": by_last[0],
           "its_first_stage_rank": 1 + by_first.index(by_last[0])}
    if expr is not None and expr in trees:
        out["tree"], out["tree_first_stage_rank"] = expr, 1 + by_first.index(expr)
    return out
