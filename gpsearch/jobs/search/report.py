"""The test-split report of a search and the extra sections of its summary.md: the robustness of
the best trees, and the transfer report on another model (``--transfer-model``). They run after
the search, on the resident evaluator (report, robustness) or a freshly loaded model (transfer)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from gpsearch.config import WANDA
from gpsearch.engine.conditions import Condition
from gpsearch.jobs.search.plan import Plan

HAND_MADE = ("ria", "ria_sqrt", "gblm", "pruner_zero")  # trees/*.json beside Wanda's tree
FACTORS = (0.25, 4.0)


def update_methods(best_expr: str, hof_exprs: list[str], n: int) -> list[str]:
    """The weight-update rows of the test report: the best ``n`` trees (the chosen one first,
    then the hall of fame) as TREE, TREE+recon and sparsegpt:TREE, beside plain sparsegpt."""
    if n <= 0:
        return []
    from gpsearch.jobs.compare.update import weight_update_methods

    trees = list(dict.fromkeys([best_expr, *hof_exprs]))[:n]
    return ["sparsegpt"] + [m for e in trees for m in (e, *weight_update_methods([e]))]


def report_on_test(p: Plan, backend, best_expr: str, run_path: Path,
                   hof_exprs: list[str] = ()) -> list[dict]:
    """Test-split perplexity of the best tree beside dense, Wanda's tree and the --report
    methods ("trees": none besides; "none": no test report at all), with the same calibration
    (``gpsearch compare``); trees use dense features, as in the search. With ``report_update``
    N, the best N trees are also replayed with a weight update."""
    from dataclasses import replace

    from gpsearch.jobs.compare.method import split_list
    from gpsearch.jobs.compare.run import CompareConfig, run_compare

    s = p.settings
    report = str(s["report"]).strip().lower()
    others = [] if report in ("", "none", "trees") else split_list(s["report"], "method")
    methods = [] if report in ("", "none") else others + [WANDA, best_expr]
    extra = update_methods(best_expr, list(hof_exprs), int(s.get("report_update") or 0))
    methods += [m for m in extra if m not in methods]
    if not methods:
        return []
    ev = replace(p.ev, split="test", max_windows=s["test_windows"] or None)
    cfg = CompareConfig(methods=methods, patterns=[str(p.pattern)], sparsities=[p.sparsity],
                        out=str(run_path / "test_report"), model=s["model"], calib=p.calib,
                        evaluation=ev, dtype=s["dtype"], device=s["device"],
                        cache_dir=s["cache_dir"], tree_features="dense",
                        device_map=s.get("device_map"))
    evaluator = getattr(backend, "evaluator", None)
    if evaluator is not None:
        evaluator.progress = False
    rows = run_compare(cfg, evaluator=evaluator, progress=False)["rows"]
    a = p.allocation
    if a is not None:  # the allocatable methods again, at the search's layer-wise sparsities
        from gpsearch.jobs.compare.allocation import allocatable
        from gpsearch.jobs.compare.registry import resolve_specs

        again = [m for m in methods
                 if all(allocatable(x) for x in resolve_specs(m, "dense"))]
        cfg = replace(cfg, methods=again, out=str(run_path / "test_report_allocation"),
                      allocations=[a.path or a.kind], owl_m=a.owl_m, owl_lambda=a.owl_lambda)
        rows += [r for r in run_compare(cfg, evaluator=evaluator, progress=False)["rows"]
                 if r.get("method") != "dense"]
    return rows


def robustness_section(p, backend, searcher, best: dict) -> tuple[str, list]:
    """Markdown + records: the best ``settings["robustness"]`` trees (the best first, then the
    hall of fame) with each terminal they or Wanda's tree use rescaled by 0.25 and 4, scored by
    perplexity on the first-stage validation windows (the cheap ones; masks equal to ones already
    scored cost no forward pass)."""
    from gpsearch.jobs.robustness import RobustnessConfig, markdown, robustness
    from gpsearch.tree import parse_prefix, terminals_used

    n = int(p.settings.get("robustness") or 0)
    evaluator = getattr(backend, "evaluator", None)
    if n <= 0:
        return "", []
    if evaluator is None:
        return ("## Robustness\n\nNot computed: the evaluations ran on Ray workers and this "
                "process holds no resident model "
                "(run `gpsearch robustness RUN/best_tree.json`).\n"), []
    exprs = list(dict.fromkeys([best["expr"]] + [h["expr"] for h in searcher.hof]))[:n]
    windows = p.search.stages[0][0] if p.search.stages else p.ev.max_windows
    ev = dataclasses.replace(p.ev, max_windows=windows)
    t0 = time.perf_counter()
    dense = evaluator.perplexity(ev, progress=False)["ppl"]
    parts, recs = [], []
    for expr in exprs:
        used = set(terminals_used(parse_prefix(expr, p.registry))) | {"W", "X"}
        terms = [t for t in ("W", "X", "G", "H") if t in used or (t == "X" and "S" in used)]
        conds = [Condition()] + [Condition(rescale=((t, f),)) for t in terms for f in FACTORS]
        cfg = RobustnessConfig(tree=expr, reference=WANDA, sparsity=p.sparsity,
                               pattern=str(p.pattern), scope=p.pattern.scope,
                               conditions=",".join(c.label() for c in conds))
        try:
            rec = robustness(evaluator, cfg, ev, dense_ppl=dense)
        except Exception as e:  # noqa: BLE001 - a report section never loses the run
            parts.append(f"`{expr}`: robustness failed: {type(e).__name__}: {e}"[:300] + "\n")
            continue
        recs.append(rec)
        parts.append(markdown(rec, title=f"`{expr}`"))
    took = time.perf_counter() - t0
    head = (f"## Robustness (validation, first-stage windows: {windows} x {ev.seqlen} tokens)\n\n"
            f"Each terminal multiplied by {' and '.join(f'{f:g}' for f in FACTORS)} before the "
            f"tree is evaluated; Wanda's tree is the reference (exactly invariant at per-row "
            f"unstructured masks). {len(exprs)} tree(s), {took:.0f} s "
            f"(`--robustness 0` turns this off; `gpsearch robustness` has calibration and "
            f"pattern conditions too).\n\n")
    return head + "\n".join(parts), recs


def transfer_report(p, best_expr: str, run_path: Path) -> tuple[str, list]:
    """``--transfer-model``: the test-split perplexity of that model pruned with the best tree,
    Wanda's tree and the hand-made trees (same calibration config, dense features as the
    search), in transfer_report/ and a summary section."""
    from gpsearch.jobs.compare.run import CompareConfig, run_compare
    from gpsearch.tree import TREES_DIR

    s = p.settings
    model = s.get("transfer_model")
    if not model:
        return "", []
    ev = dataclasses.replace(p.ev, split="test", max_windows=s["test_windows"] or None)
    methods = list(dict.fromkeys([best_expr, WANDA] + [str(TREES_DIR / f"{n}.json")
                                                       for n in HAND_MADE]))
    cfg = CompareConfig(methods=methods, patterns=[str(p.pattern)], sparsities=[p.sparsity],
                        out=str(run_path / "transfer_report"), model=model, calib=p.calib,
                        evaluation=ev, dtype=s["dtype"], device=s["device"],
                        cache_dir=s["cache_dir"], tree_features="dense")
    try:
        rows = run_compare(cfg, progress=False)["rows"]
    except Exception as e:  # noqa: BLE001 - the search's results stay written
        return f"## Transfer to `{model}`\n\nfailed: {type(e).__name__}: {e}"[:400] + "\n", []
    lines = [f"## Transfer to `{model}` (test split, {ev.max_windows or 'all'} windows x "
             f"{ev.seqlen}, sparsity {p.sparsity:g} {p.pattern}, dense features)", "",
             "| method | test PPL | vs Wanda's tree |", "|---|---:|---:|"]
    by = {r["method"]: r["ppl"] for r in rows if not r.get("error")}
    for r in rows:
        name = Path(r["method"]).stem if r["method"].endswith(".json") else r["method"]
        if r["method"] == best_expr:
            name = f"**best** `{best_expr}`"
        else:
            name = f"`{name}`"
        if r.get("error"):
            lines.append(f"| {name} | error: {r['error'][:80]} | |")
            continue
        rel = "" if WANDA not in by or r["method"] in ("dense", WANDA) else \
            f"{100 * (r['ppl'] / by[WANDA] - 1):+.1f}%"
        lines.append(f"| {name} | {r['ppl']:.3f} | {rel} |")
    return "\n".join(lines) + "\n", rows
