"""The search application: settings -> validated plan -> backend + searcher -> run directory ->
test-split report. ``run_search`` is what ``gpsearch search`` calls; it is callable from Python.

Fitness is the VALIDATION-split score after pruning with the candidate tree (dense feature mode);
duplicates are skipped before any forward pass. Everything goes to a run directory (config.json,
checkpoint.json after every generation, log.jsonl, hall_of_fame.csv, best_tree.json,
progress.png, summary.md); a resumed run continues to the same result. At the end the best tree
is compared with dense and the ``report`` methods on the TEST split.
"""

from __future__ import annotations

import time

from gpsearch.errors import UserError
from gpsearch.io import code_version
from gpsearch.jobs.search import pick as search_pick
from gpsearch.jobs.search import steps as search_steps
from gpsearch.jobs.search.plan import (
    AUTO_FUNNEL,
    AUTO_FUNNEL_TOP,
    AUTO_FUNNEL_WINDOWS,
    DEFAULTS,
    RUNTIME_ONLY,
    Plan,
    build_searcher,
    fitness_text,
    plan,
    resolve_settings,
    run_config,
)


def build_backend(p: Plan):
    from gpsearch.pruning.features import kinds_for
    from gpsearch.workers.factory import make_backend

    s, kinds = p.settings, kinds_for(p.space.terminals)
    backend = make_backend(s["workers"], s.get("ray_address"), model=s["model"], calib=p.calib,
                           ev=p.ev,
                           sparsity=p.sparsity, pattern=p.pattern, mode="dense", dtype=s["dtype"],
                           device=s["device"], cache_dir=s["cache_dir"], progress=True,
                           features=tuple(kinds), eval_timeout=s.get("eval_timeout"),
                           fitness=s["fitness"], topk=s["topk"], device_map=s.get("device_map"),
                           gpus_per_worker=(1 if s.get("gpus_per_worker") is None
                                            else s["gpus_per_worker"]),
                           conditions=p.conditions, reduce=s["fitness_reduce"],
                           allocation=p.allocation.to_dict() if p.allocation else None,
                           snapshots=search_pick.snapshot_sizes(p))
    for b in getattr(backend, "backends", [backend]):
        if hasattr(b, "evaluator"):
            if p.allocation is not None and p.allocation.kind != "owl":
                try:  # a file that does not fit the model: one line, before the run directory
                    b.sparsity_for(None)
                except BaseException:
                    backend.close()
                    raise
            b.evaluator.progress = False  # no perplexity bar per candidate
            have = b.evaluator.windows(p.ev).shape[0]
            if have < p.ev.max_windows:
                backend.close()
                raise UserError(f"the validation split has {have} windows of {p.ev.seqlen} "
                                f"tokens for {b.evaluator.lm.spec}; the fitness needs "
                                f"{p.ev.max_windows} (lower --stages or --max-windows)")
    return backend


def run_search(given: dict | None = None, out: str | None = None,
               resume: str | None = None) -> dict:
    """Run (or resume) a search. ``given``: settings by name (see DEFAULTS; ``seed_trees`` a list);
    returns {"run_dir", "best", "rows", "summary"}."""
    from gpsearch.engine import checkpoint, rundir_check
    from gpsearch.engine.rundir import RunDir, summary_text
    from gpsearch.jobs.search.lead import lead_section
    from gpsearch.jobs.search.report import report_on_test, robustness_section, transfer_report

    t0 = time.perf_counter()
    given = dict(given or {})
    if resume and out:
        raise UserError("give either --out (a new run) or --resume (an existing one)")
    if given.get("seed_trees") is not None:
        given["seed_trees"] = list(given["seed_trees"])
    run_dir = RunDir.open(resume) if resume else None
    saved = rundir_check.check_config(run_dir.config(), run_dir.file("config.json"), DEFAULTS) \
        if run_dir else None
    settings = resolve_settings(given, saved["settings"] if saved else None)
    p = plan(settings, saved)  # every input error surfaces here, before anything is written
    state = rundir_check.check_resume(run_dir, saved, p) if run_dir else None
    if run_dir is None:
        out = out or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}"
        RunDir.check_new(out)
    print(f"search space {p.space.name} ({', '.join(p.space.terminals)}): population "
          f"{p.search.population}, {p.search.offspring} children x {settings['generations']} "
          f"generations{f' (refill up to {p.search.refill} rounds)' if p.search.refill else ''}"
          f"; sparsity {p.sparsity:g} {p.pattern}; seed {p.search.seed}")
    print(f"fitness: {fitness_text(p)}; calibration {p.calib.to_dict()}")
    backend = build_backend(p)  # model, data and features load before the run directory exists
    if run_dir is None:
        try:
            run_dir = RunDir.create(out, run_config(p))
        except BaseException:
            backend.close()
            raise
    print(f"run directory: {run_dir.path}")
    try:
        searcher = build_searcher(p, backend)
        if saved:
            if state is not None:
                checkpoint.restore(searcher, state)
            run_dir.truncate_log(searcher.generation)
            print(f"resuming after generation {searcher.generation}")
        run_dir.record_session({
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **code_version(),
            "after_generation": searcher.generation if saved else None,
            "generations": settings["generations"],
            "runtime": {k: settings.get(k) for k in sorted(RUNTIME_ONLY)}})
        run_dir.attach(searcher)
        search_steps.run_with_progress(searcher, settings["generations"])
        best = searcher.best()
        if best is None:
            raise UserError("no tree could be evaluated: see the errors in log.jsonl")
        tuned = search_steps.tune_best(searcher, settings["tune"]) if settings["tune"] else None
        if tuned:
            run_dir.write_json("tuning.json", tuned)
            if tuned["winner"]:
                best = tuned["winner"]
        final = search_steps.rerank_final(searcher, [best] + list(searcher.hof),
                                          settings["final_trees"], settings["final_windows"]) \
            if settings["final_trees"] > 1 else None
        if final:
            run_dir.write_json("final_stage.json", final)
            best = final["winner"] or best
        pick = search_pick.robust_pick(p, backend, searcher, [best] + list(searcher.hof),
                                       final["windows"] if final else p.search.stages[-1][0]
                                       if p.search.stages else p.ev.max_windows)
        if pick:
            run_dir.write_json("pick.json", pick)
            best = pick["winner"] or best
        run_dir.write_best_tree(best["expr"], searcher.pset, p.save_tree)
        run_dir.write_progress(searcher.logbook)
        rows = report_on_test(p, backend, best["expr"], run_dir.path,
                              [h["expr"] for h in searcher.hof])
        lead_md, lead = lead_section(p, backend, best["expr"], rows)
        if lead:
            run_dir.write_json("lead.json", lead)
        robust_md, robust = robustness_section(p, backend, searcher, best)
        if robust:
            run_dir.write_json("robustness.json", {"trees": robust})
    finally:
        backend.close()
    transfer_md, _ = transfer_report(p, best["expr"], run_dir.path)
    text = summary_text({**run_dir.config(), "settings": settings}, searcher, rows,
                        search_steps.sympy_form(best["expr"], p.registry), time.perf_counter() - t0,
                        best=best, tuning=tuned, sessions=run_dir.sessions())
    final_md = search_steps.rerank_markdown(final, p.ev.seqlen)
    pick_md = search_pick.pick_markdown(pick)
    text += "".join("\n" + md for md in (lead_md, final_md, pick_md, robust_md, transfer_md)
                    if md)
    run_dir.write_summary(text)  # now: a funnel that fails later loses nothing of the search
    if settings.get("funnel"):
        text = _funnel(settings["funnel"], run_dir, backend, p, searcher, best, text)
    print(text)
    return {"run_dir": str(run_dir.path), "best": best, "rows": rows, "summary": text}


def _funnel(conditions: str, run_dir, backend, p: Plan, searcher, best: dict, text: str) -> str:
    """The funnel over the finished run (``gpsearch funnel``): funnel.{json,md}; when it reports
    another tree than the search (its seed or a hand tree: the lead did not hold beyond noise),
    best_tree.json becomes that tree and the summary says so. Returns the new summary.
    ``conditions`` "auto": ``AUTO_FUNNEL`` where it applies; where it does not (a layer-wise
    allocation, a pattern its conditions do not fit, no resident model), the summary says why
    and how to run one."""
    from gpsearch.jobs.funnel import FunnelConfig, run_funnel

    evaluator = getattr(backend, "evaluator", None)  # the serial backend's resident model
    if evaluator is not None and evaluator.calib != p.calib:
        evaluator = None
    auto = {"conditions": AUTO_FUNNEL, "top": AUTO_FUNNEL_TOP,
            "max_windows": min(AUTO_FUNNEL_WINDOWS, p.ev.max_windows)}
    cfg = FunnelConfig(run_dir=str(run_dir.path),
                       **(auto if conditions == "auto" else {"conditions": conditions}))
    why = None
    if conditions == "auto" and evaluator is None:
        why = "no resident model in this process (Ray workers or another calibration)"
    try:
        if why is None:  # (run_funnel checks every input before it scores anything)
            rec = run_funnel(cfg, evaluator=evaluator)
    except UserError as e:
        if conditions != "auto":
            raise
        why = str(e)
    if why:
        text += (f"\n## Funnel\n\nNot run (`--funnel auto`): {why}. "
                 f"`gpsearch funnel {run_dir.path} --conditions FILE` runs one with "
                 "conditions that fit the run.\n")
        run_dir.write_summary(text)
        return text
    reported = rec["reported"]["expr"]
    lines = ["", "## Funnel", "", f"{rec['verdict'][0].upper()}{rec['verdict'][1:]}: the "
             f"reported tree is `{reported}` ({rec['reported']['kind']}); every finalist under "
             "every condition in `funnel.md`."]
    if reported != best["expr"]:
        run_dir.write_best_tree(reported, searcher.pset, p.save_tree)
        lines.append(f"`best_tree.json` holds it, not the search's own best `{best['expr']}` "
                     "(whose test-split row is above).")
    text += "\n".join(lines) + "\n"
    run_dir.write_summary(text)
    return text
