"""The robust pick: the search's result is the hall-of-fame tree with the best fitness over
several evaluation conditions (``--pick-conditions``, e.g. another calibration size), not under
the search's own condition alone.

Why: the fitness windows cannot tell a tree that is good because of the calibration it was given
from one that is good under any calibration, and scoring the hall of fame once more per
condition is far cheaper than scoring every candidate (``--fitness-nsamples``). Measured on the
single-condition README run (validation KL, 8 windows): its best tree, a gradient tree, scores
0.9785 with 128 calibration samples and 1.0068 with 32 (Wanda's tree: 0.9977 and 1.0038); the
pick chose the hall's second tree (0.9796 and 0.9789), whose TEST perplexity is only 0.03% below
Wanda's tree's (39.062 vs 39.072, ``bench/search_robust_pick``): robust on 2,048 tokens, no real
advantage. So it is off by default; the default search pays for the condition on every
candidate instead.

    candidates   the tree the search would return, then the hall of fame (distinct, in order)
    windows      the validation windows the search ranked them on (the last stage's, or the
                 final stage's); every condition is scored on the same windows
    a condition  rescaled terminals and/or the features of another calibration size or seed
                 (``search/conditions.py``), on the same resident model and dense reference
    baseline     the search's own score (its cached per-window values when it has them)
    combined     the worst (``max``) or the ``mean`` of a tree's scores, baseline included;
                 the winner has the lowest (ties: the earlier candidate)

It needs the model resident in this process: with Ray workers, or with a multi-condition fitness
(already robust by construction), it is skipped and says why.
"""

from __future__ import annotations

import time

from gpsearch.engine.evaluation import capped_scores
from gpsearch.engine.result import fitness_level
from gpsearch.jobs.search.steps import cached_values

ALLOWED = ("rescale", "nsamples", "seed")
REDUCERS = ("max", "mean")


def pick_conditions(text: str | None) -> list:
    """The extra conditions of ``--pick-conditions`` (baseline dropped); a bad one is a
    UserError."""
    from gpsearch.engine.conditions import Condition, parse_conditions

    return [c for c in parse_conditions(text or "", ALLOWED) if c != Condition()]


def pick_text(settings: dict) -> str:
    """The pick, as a clause of the run's fitness text ("" when off)."""
    conds = pick_conditions(settings.get("pick_conditions"))
    if not conds:
        return ""
    how = "worst" if settings.get("pick_reduce", "max") == "max" else "mean"
    return (f"; result: the hall-of-fame tree with the best {how} score over baseline, "
            f"{', '.join(c.label() for c in conds)} (robust pick)")


def snapshot_sizes(p) -> tuple:
    """The calibration sizes (with the run's seed) that the pick or the fitness conditions of
    plan ``p`` score: each model's feature pass caches them on the way when they are smaller
    (``features.FeatureStore`` checks that)."""
    conds = list(p.conditions) + pick_conditions(p.settings.get("pick_conditions"))
    return tuple(sorted({c.nsamples for c in conds if c.nsamples and c.seed is None}))


def combine(scores: list[float], how: str) -> float:
    if how not in REDUCERS:
        raise ValueError(f"unknown reduction {how!r}")
    if how == "max":
        return max(scores)
    return sum(scores) / len(scores)


def robust_pick(p, backend, searcher, candidates: list[dict], windows: int) -> dict | None:
    """The record written to pick.json (None when ``--pick-conditions`` is empty or fewer than
    two candidates); ``winner`` is the chosen entry of ``candidates``."""
    conds = pick_conditions(p.settings.get("pick_conditions"))
    by_expr = {}
    for c in candidates:
        by_expr.setdefault(c["expr"], c)
    exprs = list(by_expr)
    if not conds or len(exprs) < 2:
        return None
    how, kind = p.settings.get("pick_reduce") or "max", p.search.fitness
    labels = ["baseline"] + [c.label() for c in conds]
    out = {"conditions": labels, "reduce": how, "fitness": kind, "windows": windows,
           "trees": [], "winner": None, "was": exprs[0]}
    evaluator = getattr(backend, "evaluator", None)
    if p.conditions:
        return {**out, "skipped": "the fitness is already multi-condition"}
    if evaluator is None:
        return {**out, "skipped": "the evaluations ran on Ray workers: this process holds no "
                                  "resident model"}
    t0 = time.perf_counter()
    print(f"robust pick: {len(exprs)} trees x {len(labels)} conditions ({', '.join(labels)}) on "
          f"{windows} validation windows", flush=True)
    scores = {e: {"baseline": _baseline(searcher, by_expr[e], kind, windows)} for e in exprs}
    redo = [e for e in exprs if scores[e]["baseline"] is None]
    for e, res in zip(redo, searcher._run_backend(redo, (0, windows)) if redo else []):
        scores[e]["baseline"] = _score(res, kind)
    for c in conds:
        b = _condition_backend(p, evaluator, c)
        for e, sc in _condition_scores(b, exprs, windows, kind).items():
            scores[e][c.label()] = sc
    for i, e in enumerate(exprs):
        vals = [scores[e][lb][0] for lb in labels]
        out["trees"].append({"expr": e, "scores": {lb: scores[e][lb][0] for lb in labels},
                             "ppl": {lb: scores[e][lb][1] for lb in labels},
                             "combined": combine(vals, how), "order": i})
    best = min(out["trees"], key=lambda t: (fitness_level(t["combined"]), t["order"]))
    out["winner"] = {**by_expr[best["expr"]], "pick": best["combined"]}
    out["seconds"] = time.perf_counter() - t0
    return out


def _condition_scores(b, exprs: list[str], windows: int, kind: str) -> dict:
    """expr -> (score, ppl) under one condition's backend; trees with the same masks there
    (equal fingerprints) share one forward pass, an invalid one scores inf."""
    fps = list(b.fingerprint_many(exprs)) if hasattr(b, "fingerprint_many") else [None] * len(exprs)
    first = {}
    for e, fp in zip(exprs, fps):
        first.setdefault(fp or e, e)
    todo = [e for e, fp in zip(exprs, fps)
            if first[fp or e] == e and not (fp or "").startswith("invalid:")]
    results = dict(zip(todo, b.evaluate_many(todo, (0, windows)))) if todo else {}
    inf = (float("inf"), float("inf"))
    return {e: inf if (fp or "").startswith("invalid:") else
            _score(results[first[fp or e]], kind) for e, fp in zip(exprs, fps)}


def _baseline(searcher, entry: dict, kind: str, windows: int):
    """(score, ppl) on windows [0, windows) from the search's cached per-window values, or None."""
    values = cached_values(searcher, entry, kind)
    if values is None or len(values["nll"]) < windows:
        return None
    return capped_scores({k: v[:windows] for k, v in values.items()}, kind)


def _score(res, kind: str) -> tuple[float, float]:
    return capped_scores(res.extra, kind) if res.ok else (float("inf"), float("inf"))


def _condition_backend(p, evaluator, c):
    """A serial backend on the resident model under condition ``c``."""
    import dataclasses

    from gpsearch.workers.serial import SerialBackend

    changes = {k: v for k, v in (("nsamples", c.nsamples), ("seed", c.seed)) if v is not None}
    calib = dataclasses.replace(p.calib, **changes) if changes else None
    b = SerialBackend(evaluator, p.sparsity, p.pattern, p.ev, "dense", fitness=p.search.fitness,
                      topk=p.settings["topk"], rescale=c.factors, feature_calib=calib,
                      allocation=p.allocation.to_dict() if p.allocation else None)
    from gpsearch.pruning.features import kinds_for

    b.prepare(kinds_for(p.space.terminals))
    return b


def pick_markdown(rec: dict | None) -> str:
    if not rec:
        return ""
    head = [f"## Robust pick ({', '.join(rec['conditions'])}; "
            f"{'worst' if rec['reduce'] == 'max' else 'mean'} of the {rec['fitness']} on "
            f"{rec['windows']} validation windows)", ""]
    if rec.get("skipped"):
        return "\n".join(head + [f"Not applied: {rec['skipped']}; the best tree is the search's "
                                 "own.", ""])
    head.append("The hall of fame re-scored under each condition; the tree with the best "
                f"{'worst' if rec['reduce'] == 'max' else 'mean'} score is the best tree "
                f"({rec['seconds']:.0f} s; `--pick-conditions ''` turns this off).")
    head += ["", "| " + " | ".join(rec["conditions"]) + " | combined | tree |",
             "|" + "---:|" * (len(rec["conditions"]) + 1) + "---|"]
    win = (rec.get("winner") or {}).get("expr")
    for t in rec["trees"]:
        cells = " | ".join(f"{t['scores'][lb]:.4f}" for lb in rec["conditions"])
        mark = " **(chosen)**" if t["expr"] == win else ""
        head.append(f"| {cells} | {t['combined']:.4f} | `{t['expr']}`{mark} |")
    if win and win != rec["was"]:
        head += ["", f"The search's own best, `{rec['was']}`, was replaced."]
    return "\n".join(head) + "\n"
