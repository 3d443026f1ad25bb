"""The funnel's selection rule (plain numbers, no torch): which of a search's finalists to report,
given each one's perplexity under each voting condition and each condition's noise.

    margin(a, b, c)   1 - ppl_a(c) / ppl_b(c): a's lead over b under condition c (> 0: a is better)
    noise(c)          how far a perplexity moves under c for a reason that has nothing to do with
                      the tree. ``condition_noise``: the largest relative change of ONE fixed tree's
                      perplexity (the funnel uses Wanda's tree) when only the calibration seed is
                      changed (c's own seed against the others'), never below ``floor`` (default
                      the ranking grid of the search, ``FITNESS_RESOLUTION`` = 1e-3). Cheap: one
                      mask and one forward pass of one tree per condition and extra seed; a margin
                      smaller than this is what another calibration draw could undo.
    a beats b         margin(a, b, c) > noise(c) under MORE than ``majority`` (default one half)
                      of the voting conditions: at least ``needed(n, majority)`` of n

Simplicity comes in three kinds: a ``hand`` tree (published: Wanda, GBLM, RIA) is simpler than a
``seed`` of the run, which is simpler than a ``searched`` tree; within a kind the smaller tree
(then the earlier one) is simpler. A tree replaces a simpler one only if it beats it:

1. the incumbent is the strongest hand tree (the lowest mean log perplexity over the voting
   conditions; ties: the smaller, then the earlier);
2. each seed that is not a hand tree, simplest first, replaces the incumbent if it beats it;
3. each searched tree, simplest first, replaces the incumbent if it beats it AND its own seed
   (the simpler ancestor it was bred from, when that is a different finalist).

The incumbent at the end is reported. When it is not a searched tree the verdict says so plainly:
"no tree beat the seed beyond noise" / "... the hand tree ... beyond noise".
"""

from __future__ import annotations

import math

from gpsearch.engine.result import FITNESS_RESOLUTION

KINDS = ("hand", "seed", "searched")


def _finite(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and x > 0)


def margin(ppl_a, ppl_b) -> float:
    """a's lead over b, 1 - ppl_a / ppl_b. A failed score (None, inf, NaN, <= 0) loses: -inf
    against a real one, 1.0 for a real one against it, 0.0 when both failed."""
    a, b = _finite(ppl_a), _finite(ppl_b)
    if not a:
        return 0.0 if not b else -math.inf
    if not b:
        return 1.0
    return 1.0 - ppl_a / ppl_b


def condition_noise(ppl, others, floor: float = FITNESS_RESOLUTION) -> float:
    """max(floor, max |other / ppl - 1|): the relative spread of one tree's perplexity ``ppl``
    against its perplexities ``others`` under the same condition with other calibration seeds.
    A failed score makes the noise infinite (no lead counts under that condition)."""
    if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor >= 0):
        raise ValueError(f"noise floor must be a finite number >= 0 (got {floor!r})")
    if not _finite(ppl) or not all(_finite(o) for o in others):
        return math.inf
    return max([float(floor)] + [abs(o / ppl - 1.0) for o in others])


def needed(n: int, majority: float = 0.5) -> int:
    """The number of conditions out of ``n`` that are more than ``majority`` of them."""
    if not 0.5 <= majority < 1:
        raise ValueError(f"majority must be in [0.5, 1) (got {majority!r})")
    return math.floor(majority * n) + 1


def compare(a: dict, b: dict, conditions: list[str], noise: dict, majority: float = 0.5) -> dict:
    """Does ``a`` beat ``b``? The conditions where a's margin exceeds the noise, and the count."""
    won = [c for c in conditions if margin(a["ppl"][c], b["ppl"][c]) > noise[c]]
    need = needed(len(conditions), majority)
    return {"against": b["name"], "wins": len(won), "of": len(conditions), "needed": need,
            "beats": len(won) >= need, "won": won}


def mean_log_ppl(f: dict, conditions: list[str]) -> float:
    """The mean log perplexity over ``conditions`` (inf when one failed; 0 with none)."""
    vals = [f["ppl"][c] for c in conditions]
    if not all(_finite(v) for v in vals):
        return math.inf
    return sum(math.log(v) for v in vals) / len(vals) if vals else 0.0


def _check(finalists: list[dict], conditions: list[str], noise: dict) -> None:
    names = [f["name"] for f in finalists]
    if len(set(names)) != len(names):
        raise ValueError(f"finalist names must be distinct: {names}")
    for f in finalists:
        if f["kind"] not in KINDS:
            raise ValueError(f"{f['name']}: kind must be one of {KINDS} (got {f['kind']!r})")
        missing = [c for c in conditions if c not in f["ppl"]]
        if missing:
            raise ValueError(f"{f['name']}: no perplexity under {', '.join(missing)}")
    missing = [c for c in conditions if c not in noise]
    if missing:
        raise ValueError(f"no noise for {', '.join(missing)}")
    if not any(f["kind"] == "hand" for f in finalists):
        raise ValueError("the funnel needs at least one hand tree")


def select(finalists: list[dict], conditions: list[str], noise: dict,
           majority: float = 0.5) -> dict:
    """Apply the rule (module docstring). ``finalists``: dicts with ``name``, ``kind`` (hand /
    seed / searched), ``size``, ``ppl`` ({condition: perplexity}) and, for a searched tree,
    ``seed`` (the name of its seed's finalist, or None). ``conditions``: the voting ones;
    ``noise``: {condition: relative noise}.

    Returns {"reported", "kind", "strongest_hand", "needed", "of", "verdict", "margins"
    ({name: {condition: margin over the strongest hand tree}}), "decisions" (one per seed that
    is not a hand tree and per searched tree, in the order they were tried: ``against``, the
    ``compare`` results, ``replaced``: the incumbent it replaced or None, ``why``)}."""
    _check(finalists, conditions, noise)
    order = {f["name"]: i for i, f in enumerate(finalists)}
    by_name = {f["name"]: f for f in finalists}

    def simplest(kind, key=None):
        group = [f for f in finalists if f["kind"] == kind]
        return sorted(group, key=key or (lambda f: (f["size"], order[f["name"]])))

    strongest = simplest("hand", lambda f: (mean_log_ppl(f, conditions), f["size"],
                                            order[f["name"]]))[0]
    incumbent, decisions = strongest, []
    for f in simplest("seed") + simplest("searched"):
        against = [compare(f, incumbent, conditions, noise, majority)]
        seed = by_name.get(f.get("seed")) if f["kind"] == "searched" else None
        if seed is not None and seed is not incumbent and seed is not f:
            against.append(compare(f, seed, conditions, noise, majority))
        ok = all(r["beats"] for r in against)
        decisions.append({"name": f["name"], "kind": f["kind"], "against": against,
                          "replaced": incumbent["name"] if ok else None,
                          "why": _why(f, against, ok, by_name)})
        if ok:
            incumbent = f
    margins = {f["name"]: {c: margin(f["ppl"][c], strongest["ppl"][c]) for c in conditions}
               for f in finalists}
    return {"reported": incumbent["name"], "kind": incumbent["kind"],
            "strongest_hand": strongest["name"], "needed": needed(len(conditions), majority),
            "of": len(conditions), "majority": majority, "margins": margins,
            "decisions": decisions,
            "verdict": _verdict(incumbent, decisions)}


def _why(f: dict, against: list[dict], ok: bool, by_name: dict) -> str:
    parts = []
    for r in against:
        role = _role(by_name[r["against"]])
        parts.append(f"beats {role} {r['against']} beyond noise under {r['wins']} of {r['of']} "
                     f"conditions (needs {r['needed']})")
    return "; ".join(parts) + (": replaces it" if ok else ": not enough, the simpler tree stays")


def _role(f: dict) -> str:
    return {"hand": "the hand tree", "seed": "the seed", "searched": "the searched tree"}[f["kind"]]


def _verdict(reported: dict, decisions: list[dict]) -> str:
    searched = [d for d in decisions if d["kind"] == "searched"]
    if reported["kind"] == "searched":
        beaten = sorted({r["against"] for d in searched if d["name"] == reported["name"]
                         for r in d["against"]})
        return (f"{reported['name']} is reported: it beat {', '.join(beaten)} beyond noise under a "
                "majority of the conditions")
    if not searched:
        return (f"no searched tree among the finalists: {_role(reported)} {reported['name']} "
                "is reported")
    if reported["kind"] == "seed":
        return f"no tree beat the seed beyond noise: the seed {reported['name']} is reported"
    # a hand tree: did every searched tree fail against it, or some only against their seeds?
    if any(d["against"][0]["beats"] for d in searched):
        return (f"no tree beat both its seed and the hand tree {reported['name']} beyond noise: "
                f"the hand tree {reported['name']} is reported")
    return (f"no tree beat the hand tree {reported['name']} beyond noise: the hand tree "
            f"{reported['name']} is reported")
