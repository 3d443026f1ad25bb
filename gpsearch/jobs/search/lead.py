"""The search summary's "Lead vs noise" section: does the reported tree lead the hand-made trees
by more than the noise of the measurement?

After the test report, on the resident evaluator: the hand trees (Wanda's tree, GBLM, the
RIA-style seed; dense features, as the search) on the TEST split, and Wanda's tree again with the
features of the next calibration seed. The noise is the relative change that seed makes to Wanda's
tree's TEST PPL (at least ``FLOOR``, the funnel's floor); a lead counts only above it. Only
calibration-seed noise on the searched condition: ``gpsearch funnel RUN_DIR`` (or ``search
--funnel default``) asks whether the lead holds under other sparsities, patterns and texts.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from gpsearch.config import WANDA

HAND = {"wanda_tree": WANDA, "gblm": "gblm", "ria_sqrt": "ria_sqrt"}  # name -> load_tree spec
FLOOR = 0.001


def verdict(best_ppl: float, hand: dict, noise: float) -> dict:
    """The lead of ``best_ppl`` over each hand tree ({name: PPL}) and over the strongest one
    (1 - best / hand), and whether it exceeds ``noise`` (pure: no model)."""
    strongest = min(hand, key=lambda k: (hand[k], k))
    margins = {k: 1 - best_ppl / v for k, v in hand.items()}
    m = margins[strongest]
    word = ("beyond the noise" if m > noise else
            "within the noise: no claim that it is better" if m > -noise else
            "worse than the strongest hand tree beyond the noise")
    return {"strongest_hand": strongest, "margins": margins, "margin": m, "noise": noise,
            "beyond_noise": m > noise, "verdict": word}


def lead_section(p, backend, best_expr: str, rows: list[dict]) -> tuple[str, dict | None]:
    """Markdown + record (None when skipped: ``--lead-noise 0``, no resident model, no test
    windows). Scores already in ``rows`` (the test report, same evaluator) are reused."""
    from gpsearch.engine.conditions import Condition
    from gpsearch.jobs.robustness import score_condition
    from gpsearch.tree import load_tree, parse_prefix

    s = p.settings
    evaluator = getattr(backend, "evaluator", None)
    if not int(s.get("lead_noise") or 0) or not s.get("test_windows"):
        return "", None
    if evaluator is None:
        return ("## Lead vs noise\n\nNot computed: the evaluations ran on Ray workers and this "
                "process holds no resident model (`gpsearch funnel RUN_DIR` checks the lead).\n",
                None)
    ev = dataclasses.replace(p.ev, split="test", max_windows=s["test_windows"])
    base = SimpleNamespace(sparsity=p.sparsity, pattern=str(p.pattern), scope=p.pattern.scope)
    known = {r["method"]: r["ppl"] for r in rows if not r.get("error") and r.get("ppl")}
    scored: dict = {}

    def ppl(node, expr: str | None, cond: Condition | None = None) -> float:
        if expr in known and cond is None:
            return known[expr]
        return score_condition(evaluator, node, cond or Condition(), base, ev, scored)[1]

    best = ppl(parse_prefix(best_expr, p.registry), best_expr)
    hand = {}
    for name, spec in HAND.items():
        node = load_tree(spec)
        hand[name] = ppl(node, WANDA if name == "wanda_tree" else None)
    seed = p.calib.seed + 1
    wanda_next = ppl(load_tree(WANDA), None, Condition(seed=seed))
    noise = max(abs(wanda_next / hand["wanda_tree"] - 1), FLOOR)
    rec = {"best": best_expr, "best_ppl": best, "hand_ppl": hand,
           "noise_tree": WANDA, "noise_seeds": [p.calib.seed, seed],
           "noise_ppl": {str(p.calib.seed): hand["wanda_tree"], str(seed): wanda_next},
           "split": "test", "windows": ev.max_windows, **verdict(best, hand, noise)}
    names = {"wanda_tree": f"Wanda's tree `{WANDA}`", "gblm": "GBLM (`trees/gblm.json`)",
             "ria_sqrt": "the RIA-style tree (`trees/ria_sqrt.json`)"}
    lines = ["## Lead vs noise (test split)", "",
             "| tree | test PPL | lead of the best tree |", "|---|---:|---:|",
             f"| **best tree** | {best:.3f} | |"]
    lines += [f"| {names[k]} | {v:.3f} | {100 * rec['margins'][k]:+.2f}% |"
              for k, v in hand.items()]
    lines += ["", f"Noise: Wanda's tree's test PPL with calibration seed {seed} instead of "
              f"{p.calib.seed} moves by {100 * abs(wanda_next / hand['wanda_tree'] - 1):.2f}% "
              f"(counted as at least {100 * FLOOR:g}%). The best tree's lead over the strongest "
              f"hand tree, {names[rec['strongest_hand']]}, is {100 * rec['margin']:+.2f}%: "
              f"**{rec['verdict']}**. Only the searched condition: the funnel (the section "
              "\"Funnel\" below when it ran; `gpsearch funnel RUN_DIR`) asks whether a lead "
              "holds under other sparsities, patterns, calibrations and text, and decides the "
              "reported tree.", ""]
    return "\n".join(lines), rec
