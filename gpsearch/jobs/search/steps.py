"""Steps of a search run after its plan (``search_run``): the generations under a progress bar,
constant tuning of the best trees, the best tree as plain sympy text."""

from __future__ import annotations

from gpsearch.engine.evaluation import capped_scores
from gpsearch.engine.result import fitness_level


def tune_best(searcher, n: int) -> dict | None:
    """Constant tuning (``search.tune``) of the ``n`` best hall-of-fame trees that have
    constants, on the first stage; each tuned tree is then scored on every stage. Returns the
    record written to tuning.json; ``winner`` is a tuned tree better than the hall's best on the
    last stage (else None)."""
    from gpsearch.engine.tune import constant_slots, tune_constants

    stages = searcher.cfg.stages
    trees = [h for h in searcher.hof if constant_slots(h["expr"])][:max(n, 0)]
    if not stages or not trees:
        return None
    kind = searcher.cfg.fitness

    def first_stage(exprs):
        return [r.fitness if r.ok else float("inf")
                for r in searcher._run_backend(exprs, (0, stages[0][0]))]

    out, best = {"trees": [], "winner": None}, searcher.best()
    for h in trees:
        t = tune_constants(h["expr"], first_stage)
        entry = {"from": h["expr"], "from_final": h["fitness"], **t}
        if t["expr"] != h["expr"]:
            res = searcher._run_backend([t["expr"]], (0, stages[-1][0]))[0]
            if res.ok:
                entry["final"], entry["final_ppl"] = capped_scores(res.extra, kind)
                if entry["final"] < (out["winner"] or best)["fitness"]:
                    out["winner"] = {"key": t["expr"], "expr": t["expr"], "fitness": entry["final"],
                                     "ppl": entry["final_ppl"], "size": None, "gen": "tuned",
                                     "windows": stages[-1][0]}
        out["trees"].append(entry)
    return out


def value_kinds(kind: str) -> tuple[str, ...]:
    """The per-window values a fitness kind is scored from (its PPL always needs the NLL)."""
    return ("nll", "kl") if kind == "kl" else ("nll",)


def cached_values(searcher, entry: dict, kind: str) -> dict | None:
    """The per-window values the search's cache holds for a hall entry (the kinds the fitness
    needs, all of one length), or None."""
    need = value_kinds(kind)
    rec = (getattr(searcher, "cache", None) or {}).get(entry.get("key"), {})
    values = rec.get("values") or {}
    if rec.get("expr") != entry["expr"] or not all(k in values for k in need):
        return None
    if len({len(values[k]) for k in need}) != 1:
        return None
    return {k: list(values[k]) for k in need}


def sympy_form(expr: str, registry) -> str:
    """The tree as plain sympy text (construction only: simplify() has no time limit)."""
    from gpsearch.tree import parse_prefix, sympy_expr

    try:
        return str(sympy_expr(parse_prefix(expr, registry), registry))
    except Exception:  # noqa: BLE001 - cosmetic only
        return expr


def run_with_progress(searcher, generations: int) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=generations + 1, initial=searcher.generation + 1, desc="search", unit="gen")
    live = {"evals": searcher.counters["evaluated"], "hits": 0, "hurdled": 0}

    def on_eval(record):
        live["evals"] += record["hit"] is None
        live["hits"] += record["hit"] in ("key", "fingerprint")
        live["hurdled"] += record["hit"] == "hurdle"
        bar.set_postfix_str(f"evals {live['evals']} hits {live['hits']} hurdled "
                            f"{live['hurdled']}", refresh=True)

    def on_gen(s, stats, seconds):
        bar.update(1)
        hall = s.best()
        bar.set_postfix_str(f"best {stats['best']:.4g} median {stats['median']:.4g} evals "
                            f"{s.counters['evaluated']} hits {s.counters['key_hits']}+"
                            f"{s.counters['fp_hits']} ({100 * stats['hit_rate']:.0f}%) masks "
                            f"{stats['distinct_masks']} top {100 * stats['top_root_share']:.0f}%")
        bar.write(f"gen {stats['gen']}: selection best {stats['best']:.4g} {stats['best_expr']} | "
                  f"hall best {hall['fitness']:.4g} {hall['expr']} ({seconds:.0f} s, "
                  f"{stats['evaluated']} evaluated, {stats.get('hurdled', 0)} hurdled, "
                  f"{stats['distinct_masks']} masks, "
                  f"{stats['top_root']} {100 * stats['top_root_share']:.0f}%)" if hall else
                  f"gen {stats['gen']}: no tree evaluated yet")

    def on_progress(gen, what):
        bar.set_postfix_str(f"gen {gen}: {what}", refresh=True)

    searcher.on_evaluation.append(on_eval)
    searcher.on_generation.append(on_gen)
    searcher.on_progress.append(on_progress)
    try:
        searcher.run_until(generations)
    finally:
        bar.close()


def rerank_final(searcher, candidates: list[dict], n: int, windows: int) -> dict | None:
    """The final stage: the first ``n`` distinct ``candidates`` (hall-of-fame entries, the
    current best first) scored on the first ``windows`` validation windows, more than the last
    stage's, where near-ties of the last stage are told apart. The windows a tree was already
    scored on (its per-window values in the search's cache) are not scored again. ``winner`` is
    the best of them on these windows (it replaces the best tree, whichever it is)."""
    kind = searcher.cfg.fitness
    exprs = list(dict.fromkeys(c["expr"] for c in candidates))[:n]
    if len(exprs) < 2:
        return None
    by_expr = {}
    for c in candidates:
        by_expr.setdefault(c["expr"], c)
    out = {"windows": windows, "fitness": kind, "trees": [], "winner": None}
    prior = {e: _scored_windows(searcher, by_expr[e], kind, windows) for e in exprs}
    results = {}
    for start in sorted({len(v["nll"]) for v in prior.values()}):  # usually one group
        group = [e for e in exprs if len(prior[e]["nll"]) == start]
        results.update(zip(group, searcher._run_backend(group, (start, windows))))
    for expr in exprs:
        res = results[expr]
        entry = {"expr": expr, "last_stage": by_expr[expr]["fitness"],
                 "last_stage_windows": by_expr[expr].get("windows")}
        if res.ok:
            values = {k: prior[expr][k] + list(res.extra[k]) for k in prior[expr]}
            entry["final"], entry["final_ppl"] = capped_scores(values, kind)
        else:
            entry["error"] = res.error
        out["trees"].append(entry)
    scored = [e for e in out["trees"] if "final" in e]
    if scored:
        # near-ties (kernel noise) go to the earlier hall-of-fame entry
        w = min(scored, key=lambda e: (fitness_level(e["final"]), scored.index(e)))
        out["winner"] = {**by_expr[w["expr"]], "fitness": w["final"], "ppl": w["final_ppl"],
                         "windows": windows}
    return out


def _scored_windows(searcher, entry: dict, kind: str, windows: int) -> dict:
    """The per-window values the search already has for a hall entry (windows [0, n), n <
    ``windows``), so the final stage only scores the windows it adds; empty lists when none."""
    values = cached_values(searcher, entry, kind)
    if values is not None and 0 < len(values["nll"]) < windows:
        return values
    return {k: [] for k in value_kinds(kind)}


def rerank_markdown(rerank: dict | None, seqlen: int) -> str:
    if not rerank:
        return ""
    lines = [f"## Final stage ({rerank['windows']} windows x {seqlen} tokens)", "",
             f"The best {len(rerank['trees'])} trees of the hall of fame re-scored "
             f"({rerank['fitness']}) "
             "on more validation windows than the last stage; the best of them is the best tree.",
             "", "| last stage | windows | final stage | final PPL | tree |",
             "|---|---|---|---|---|"]
    win = (rerank.get("winner") or {}).get("expr")
    for e in rerank["trees"]:
        final = f"{e['final']:.4g}" if "final" in e else f"error: {e.get('error', '')[:60]}"
        ppl = f"{e['final_ppl']:.4g}" if "final_ppl" in e else "-"
        mark = " **(chosen)**" if e["expr"] == win else ""
        lines.append(f"| {e['last_stage']:.4g} | {e['last_stage_windows'] or '-'} | {final} | "
                     f"{ppl} | `{e['expr']}`{mark} |")
    return "\n".join(lines) + "\n"
