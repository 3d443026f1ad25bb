"""The funnel (``gpsearch funnel RUN_DIR``): a finished search reports a tree only when its lead
holds beyond the conditions it was searched on.

    finalists    the run's top ``top`` trees (hall_of_fame.csv, ranked on the last stage), its
                 best ``seeds`` seeds (log.jsonl records with "op": "seed", best first-stage
                 fitness first), each top tree's own seed (the best seed it descends from through
                 the log's parents), the tree the search reported (best_tree.json, when the hall
                 of fame does not hold it: a constant-tuned tree) and the hand trees of the
                 conditions file (Wanda, GBLM, RIA with sqrt by default), loaded with
                 ``gpsearch.tree.load_tree``
    conditions   DATA: a funnel file (``funnels/NAME.json`` or a path; JSON parsed by our own
                 code in ``jobs/funnel_spec.py``, which gives the format; the run directory is
                 read by ``jobs/funnel_run.py``; both checked completely before the model
                 loads; a copy is written into the run directory as funnel_conditions.json).
                 Each is a condition of
                 ``engine/conditions.py`` (another sparsity, pattern, calibration size or seed,
                 rescaled terminals) applied on top of the run's own settings, optionally on
                 another text: ``"text": "held-apart"`` = the LAST ``max_windows`` windows of the
                 validation split (no search stage scores them: they are checked to lie after
                 every window the run scored), or ``"data": SPEC`` = another corpus's
                 validation split. The run's own condition ("searched") is always the first row
                 and never votes; neither does a file condition the run's fitness already used
                 (``nsamples=32`` in the default search) or one that changes nothing for this run
    scoring      every finalist under every condition on the VALIDATION split (the first
                 ``max_windows`` windows, by default the run's last-stage windows), by
                 ``jobs/robustness.py`` (``score_condition``): masks hashed, an unchanged mask
                 costs no forward pass
    noise        per condition: the largest relative change of the noise tree's (Wanda's) PPL
                 when only the calibration seed changes (the condition's own seed against the
                 run's seed and the file's noise seeds), at least the file's floor
                 (``engine/funnel.py``, ``condition_noise``): one tree, one extra mask and
                 forward pass per condition and seed
    rule         ``engine/funnel.py`` (``select``): a tree replaces a simpler one (the strongest
                 hand tree, its seed) only if it leads it by more than the noise under a
                 majority of the voting conditions; else the simpler tree is reported and the
                 verdict says so ("no tree beat the seed beyond noise")

Output, in the run directory: funnel.json (every finalist x condition, margins over the strongest
hand tree, noise, the decisions, the conditions and the code's commit), funnel.md (the table).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from gpsearch.config import EvalConfig
from gpsearch.engine.funnel import condition_noise, margin, select
from gpsearch.errors import UserError
from gpsearch.jobs.funnel_run import Run, read_run, seed_ancestors
from gpsearch.jobs.funnel_spec import FunnelCondition, FunnelSpec, is_int, read_spec

OUTPUTS = ("funnel.json", "funnel.md", "funnel_conditions.json")


@dataclass
class FunnelConfig:
    """What ``funnel`` does; the CLI's defaults are these."""

    run_dir: str | None = None  # a finished search run directory (required)
    conditions: str = "default"  # funnels/NAME.json or a path to a funnel file
    top: int = 3  # hall-of-fame trees (by the last stage)
    seeds: int = 2  # the run's best seeds (by first-stage fitness)
    max_windows: int | None = None  # validation windows; None: the run's last-stage windows
    device: str | None = None  # None: the run's
    cache_dir: str | None = None  # feature cache; None: the run's


# ---- finalists ------------------------------------------------------------------------------
def finalists(spec: FunnelSpec, run: Run, top: int, nseeds: int) -> list[dict]:
    """Hand trees, then seeds, then the top trees; one entry per distinct tree (``roles``: every
    part it plays; ``kind``: the simplest). A top tree's ``seed``: the name of the finalist
    holding the best seed it descends from (the run's best seed when the log knows none)."""
    from gpsearch.tree import EXTENDED, load_tree, parse_prefix, to_prefix

    out: dict[str, dict] = {}

    def add(node, role: str, name: str, **info) -> dict:
        key = to_prefix(node)
        f = out.get(key)
        if f is None:
            f = out[key] = {"name": name, "expr": key, "kind": role, "roles": [], "aliases": [],
                            "size": node.size(), "node": node}
        elif name != f["name"]:
            f["aliases"].append(name)
        f["roles"].append(role)
        f.update(info)
        return f

    def parse(expr: str, where: str):
        try:
            return parse_prefix(expr, EXTENDED)
        except UserError as e:
            raise UserError(f"{run.path / where}: {e}") from None

    for h in spec.hand_trees:
        add(load_tree(h), "hand", h)
    seed_rank = {s["expr"]: i for i, s in enumerate(run.seeds)}
    seed_entry = {}

    def add_seed(i: int) -> dict:
        s = run.seeds[i]
        if s["expr"] not in seed_entry:
            seed_entry[s["expr"]] = add(parse(s["expr"], "log.jsonl"), "seed", f"seed{i + 1}",
                                        seed_fitness=s["fitness"])
        return seed_entry[s["expr"]]

    for i in range(min(nseeds, len(run.seeds))):
        add_seed(i)
    for h in run.hof[:top]:
        roots = seed_ancestors(h["expr"], run.origins, set(seed_rank))
        best = min((seed_rank[r] for r in roots), default=None)
        by = "its best ancestor seed in log.jsonl"
        if best is None and run.seeds:
            best, by = 0, "the run's best seed (log.jsonl names no seed it descends from)"
        seed = add_seed(best)["name"] if best is not None else None
        f = add(parse(h["expr"], "hall_of_fame.csv"), "searched", f"hof{h['rank']}",
                rank=h["rank"], fitness=h["fitness"])
        if f["kind"] == "searched":
            f.update(seed=seed if seed != f["name"] else None, seed_by=by)
    if run.reported and run.reported not in out:  # e.g. a constant-tuned tree
        roots = seed_ancestors(run.reported, run.origins, set(seed_rank))
        best = min((seed_rank[r] for r in roots), default=0 if run.seeds else None)
        f = add(parse(run.reported, "best_tree.json"), "searched", "reported")
        if best is not None:
            f.update(seed=add_seed(best)["name"], seed_by="its best ancestor seed in log.jsonl"
                     if roots else "the run's best seed (log.jsonl names no seed it descends "
                     "from)")
    return list(out.values())


# ---- scoring --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Base:
    """The run's sparsity, pattern and scope (what ``score_condition`` applies a condition to)."""

    sparsity: float
    pattern: str
    scope: str


def _effective(fc: FunnelCondition, run: Run, base: _Base) -> tuple:
    """What ``fc`` measures, in full: two conditions with equal tuples score alike."""
    from gpsearch.jobs.robustness import pattern_of

    sparsity, pattern = pattern_of(fc.condition, base)
    c = fc.condition
    return (round(sparsity, 12), pattern, c.rescale, c.nsamples or run.calib.nsamples,
            run.calib.seed if c.seed is None else c.seed, fc.text, fc.data or run.ev.data)


def _votes(fc: FunnelCondition, run: Run, base: _Base) -> str | None:
    """Why ``fc`` does not vote (None: it votes)."""
    if _effective(fc, run, base) == _effective(FunnelCondition(), run, base):
        return "the run's own condition"
    if fc.text == "search" and fc.data is None and fc.condition in run.fitness_conditions:
        return "part of the run's fitness"
    return None


class _Scorer:
    """Perplexities of trees under funnel conditions on one resident evaluator; one mask-digest
    cache per set of windows (``robustness.score_condition``)."""

    def __init__(self, evaluator, run: Run, base: _Base, n: int):
        self.evaluator, self.run, self.base, self.n = evaluator, run, base, n
        self.sets: dict = {}

    def windows(self, fc: FunnelCondition) -> dict:
        from gpsearch.model.data import eval_windows

        key = (fc.data or self.run.ev.data, fc.text)
        if key not in self.sets:
            ev = EvalConfig(data=key[0], split="validation", seqlen=self.run.ev.seqlen,
                            max_windows=self.n, batch_size=self.run.ev.batch_size)
            if fc.text == "search":
                got = self.evaluator.windows(ev).shape[0]
                self.sets[key] = {"ev": ev, "windows": None, "range": [0, got], "scored": {}}
            else:
                full = eval_windows(self.evaluator.lm.tokenizer,
                                    dataclasses.replace(ev, max_windows=None))
                total = full.shape[0]
                avoid = max(self.n, self.run.ev.max_windows) if key[0] == self.run.ev.data \
                    else self.n
                if total - self.n < avoid:
                    raise UserError(f"the validation split of {key[0]!r} has {total} windows of "
                                    f"{ev.seqlen} tokens: too few to hold {self.n} apart after "
                                    f"the first {avoid} (use a smaller --max-windows)")
                self.sets[key] = {"ev": ev, "windows": full[total - self.n:],
                                  "range": [total - self.n, total], "scored": {}}
        return self.sets[key]

    def ppl(self, node, fc: FunnelCondition) -> tuple[float, str | None]:
        from gpsearch.jobs.robustness import score_condition

        ws = self.windows(fc)
        try:
            _, ppl = score_condition(self.evaluator, node, fc.condition, self.base, ws["ev"],
                                     ws["scored"], ws["windows"])
            return ppl, None
        except UserError as e:  # a tree that cannot be scored here loses this condition
            return math.inf, str(e)


def check(cfg: FunnelConfig) -> tuple[FunnelSpec, Run, list[dict], _Base]:
    """Every input of ``cfg`` checked (nothing loaded, nothing written)."""
    from gpsearch.jobs.robustness import pattern_of
    from gpsearch.model.data import load_texts
    from gpsearch.pruning.masks import parse_pattern

    for name, lo in (("top", 1), ("seeds", 0)):
        v = getattr(cfg, name)
        if not is_int(v) or not lo <= v <= 1000:
            raise UserError(f"--{name} must be an integer in [{lo}, 1000] (got {v!r})")
    if cfg.max_windows is not None and (not is_int(cfg.max_windows) or cfg.max_windows < 1):
        raise UserError(f"--max-windows must be at least 1 (got {cfg.max_windows!r})")
    run = read_run(cfg.run_dir)
    spec = read_spec(cfg.conditions)
    base = _Base(run.sparsity, run.pattern, run.scope)
    parse_pattern(run.pattern, run.sparsity, run.scope)
    if not set(spec.noise_seeds) - {run.calib.seed}:
        raise UserError(f"conditions file {spec.path}: noise.seeds must name a calibration seed "
                        f"other than the run's ({run.calib.seed})")
    for fc in spec.conditions:
        try:
            pattern_of(fc.condition, base)
        except UserError as e:
            raise UserError(f"conditions file {spec.path}: {fc.label()} cannot apply to this run "
                            f"({run.sparsity:g} {run.pattern}): {e}") from None
        if fc.data:
            load_texts(fc.data, "validation")
    fins = finalists(spec, run, cfg.top, cfg.seeds)
    return spec, run, fins, base


def run_funnel(cfg: FunnelConfig, evaluator=None, progress: bool = True) -> dict:
    """``gpsearch funnel``: check every input, load the run's model (unless ``evaluator``: one on
    the run's model and calibration), score, select, write funnel.{json,md} and
    funnel_conditions.json into the run directory. Returns the record."""
    from gpsearch.io import code_version, relative_path, write_json, write_text
    from gpsearch.tree import load_tree

    version = code_version()  # the code that runs: read now, not after minutes of edits
    spec, run, fins, base = check(cfg)
    if evaluator is None:
        from gpsearch.pruning.evaluator import Evaluator

        evaluator = Evaluator(run.model, run.calib, run.dtype, cfg.device or run.device,
                              cfg.cache_dir or run.cache_dir, progress=progress)
    elif evaluator.calib != run.calib:
        raise UserError(f"the evaluator's calibration {evaluator.calib} is not the run's "
                        f"{run.calib}")
    t0 = time.perf_counter()
    n = cfg.max_windows or run.ev.max_windows
    scorer = _Scorer(evaluator, run, base, n)
    rows = [FunnelCondition()] + list(spec.conditions)
    for fc in rows:  # the held-apart slices checked before the first forward pass
        scorer.windows(fc)
    labels = ["searched"] + [fc.label() for fc in spec.conditions]
    noise_node = load_tree(spec.noise_tree)
    partners = list(dict.fromkeys([run.calib.seed, *spec.noise_seeds]))
    if progress:
        print(f"funnel: {len(fins)} trees x {len(rows)} conditions on {n} validation windows "
              f"({', '.join(labels)})", flush=True)
    table, errors, noise = {f["name"]: {} for f in fins}, {}, {}
    for fc, label in zip(rows, labels):
        t1 = time.perf_counter()
        for f in fins:
            table[f["name"]][label], err = scorer.ppl(f["node"], fc)
            if err:
                errors.setdefault(f["name"], {})[label] = err
        own = fc.condition.seed if fc.condition.seed is not None else run.calib.seed
        seeds = {s: scorer.ppl(noise_node, fc.with_seed(s, run.calib.seed))[0]
                 for s in [own] + [s for s in partners if s != own]}
        noise[label] = {"noise": condition_noise(seeds[own], [v for s, v in seeds.items()
                                                              if s != own], spec.noise_floor),
                        "ppl_by_seed": {str(s): _num(v) for s, v in seeds.items()}}
        if progress:
            print(f"  {label}: " + ", ".join(f"{f['name']} {table[f['name']][label]:.4f}"
                                             for f in fins) +
                  f"; noise {100 * noise[label]['noise']:.3f}% "
                  f"({time.perf_counter() - t1:.0f} s)", flush=True)
    why_not = {label: _votes(fc, run, base) for fc, label in zip(rows[1:], labels[1:])}
    voting = [lb for lb in labels[1:] if why_not[lb] is None]
    sel = select([{"name": f["name"], "kind": f["kind"], "size": f["size"],
                   "seed": f.get("seed"), "ppl": table[f["name"]]} for f in fins],
                 voting, {lb: noise[lb]["noise"] for lb in voting}, spec.majority)
    strongest = table[sel["strongest_hand"]]
    reported = next(f for f in fins if f["name"] == sel["reported"])
    sets = {f"{k[0]}:{k[1]}": {"range": v["range"]} for k, v in scorer.sets.items()}
    rec = {
        "command": "funnel", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **version,
        "run_dir": relative_path(run.path), "conditions_file": relative_path(spec.path),
        "model": evaluator.lm.spec, "sparsity": run.sparsity, "pattern": run.pattern,
        "scope": run.scope, "calibration": run.calib.to_dict(),
        "evaluation": {"split": "validation", "seqlen": run.ev.seqlen, "max_windows": n,
                       "run_windows": run.ev.max_windows, "windows": sets},
        "conditions": [{**fc.to_dict(), "label": lb, "votes": why_not.get(lb) is None
                        and lb != "searched", "why_not": why_not.get(lb, "the run's own "
                                                                           "condition")}
                       for fc, lb in zip(rows, labels)],
        "voting": voting, "majority": spec.majority,
        "noise": {"tree": spec.noise_tree, "seeds": partners, "floor": spec.noise_floor,
                  "how": "largest relative change of the noise tree's PPL when only the "
                         "calibration seed changes",
                  "by_condition": {lb: v | {"noise": _num(v["noise"])}
                                   for lb, v in noise.items()}},
        "finalists": [{k: _num(v) if k == "seed_fitness" else v for k, v in f.items()
                       if k != "node"} |
                       {"ppl": {lb: _num(table[f["name"]][lb]) for lb in labels},
                        "margin": {lb: _num(margin(table[f["name"]][lb], strongest[lb]))
                                   for lb in labels},
                        "errors": errors.get(f["name"], {})} for f in fins],
        "selection": sel | {"margins": {k: {c: _num(m) for c, m in v.items()}
                                        for k, v in sel["margins"].items()}},
        "reported": {"name": reported["name"], "expr": reported["expr"],
                     "kind": reported["kind"]},
        "verdict": sel["verdict"], "seconds": time.perf_counter() - t0,
    }
    rec["markdown"] = markdown(rec)
    write_json(run.path / "funnel_conditions.json", spec.data, default=None)
    write_json(run.path / "funnel.json", rec)
    write_text(run.path / "funnel.md", rec["markdown"])
    return rec


def _num(x):
    """A JSON-safe number: None for inf / NaN (a failed score)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


# ---- report ---------------------------------------------------------------------------------
def markdown(rec: dict) -> str:
    """funnel.md: every finalist under every condition, the noise, the decisions, the verdict."""
    sel, conds = rec["selection"], rec["conditions"]
    hand = sel["strongest_hand"]
    ev = rec["evaluation"]
    ranges = "; ".join(f"{k.split(':', 1)[1]} windows {v['range'][0]}-{v['range'][1] - 1}"
                       + (f" of {k.split(':', 1)[0]}" if k.split(":", 1)[0] !=
                          rec["calibration"]["data"] else "")
                       for k, v in ev["windows"].items())
    lines = [f"## Funnel: {rec['run_dir']}", "",
             f"**Reported: `{rec['reported']['expr']}`** ({rec['reported']['name']}, "
             f"{rec['reported']['kind']}). {rec['verdict'][0].upper()}{rec['verdict'][1:]}.", "",
             f"Every finalist re-scored on the VALIDATION split ({ranges}; x {ev['seqlen']} "
             f"tokens; the run ranked on windows 0-{ev['run_windows'] - 1}), {rec['model']}, "
             f"{rec['sparsity']:g} {rec['pattern']} ({rec['scope']}), calibration "
             f"{rec['calibration']['nsamples']} x {rec['calibration']['seqlen']} seed "
             f"{rec['calibration']['seed']}; conditions from `{rec['conditions_file']}`; "
             f"commit {str(rec.get('commit', 'unknown'))[:12]}"
             f"{' (uncommitted changes)' if rec.get('dirty') else ''}.", ""]
    head = "| tree | kind | size | " + " | ".join(
        c["label"] + ("" if c["votes"] else " *") for c in conds) + " |"
    lines += [head, "|---|---|---:|" + "---:|" * len(conds)]
    for f in rec["finalists"]:
        cells = []
        for c in conds:
            p, m = f["ppl"][c["label"]], f["margin"][c["label"]]
            cells.append("failed" if p is None else f"{p:.3f}" if f["name"] == hand else
                         f"{p:.3f} ({'n/a' if m is None else f'{100 * m:+.2f}%'})")
        mark = "**" if f["name"] == rec["reported"]["name"] else ""
        lines.append(f"| {mark}{f['name']}{mark} | {f['kind']} | {f['size']} | "
                     + " | ".join(cells) + " |")
    by = rec["noise"]["by_condition"]
    lines.append("| noise | | | " + " | ".join(
        "inf" if by[c["label"]]["noise"] is None else f"±{100 * by[c['label']]['noise']:.2f}%"
        for c in conds) + " |")
    lines += ["", f"PPL (margin = 1 - PPL / PPL of the strongest hand tree, {hand}). Noise: the "
              f"largest relative change of `{rec['noise']['tree']}`'s PPL when only the "
              f"calibration seed changes (seeds {', '.join(map(str, rec['noise']['seeds']))}), "
              f"at least {100 * rec['noise']['floor']:g}%. A tree replaces a simpler one (the "
              f"strongest hand tree, its seed) only when it leads it by more than the noise "
              f"under at least {sel['needed']} of the {sel['of']} voting conditions; otherwise "
              "the simpler tree is reported."]
    silent = [c for c in conds if not c["votes"]]
    if silent:
        lines.append("Not voting (marked \\*): " + "; ".join(f"{c['label']} ({c['why_not']})"
                                                    for c in silent) + ".")
    lines += ["", "### Why", ""]
    for d in sel["decisions"]:
        lines.append(f"- {d['name']} ({d['kind']}): {d['why']}.")
    if not sel["decisions"]:
        lines.append("- no seed or searched tree to try.")
    lines += ["", "### Finalists", ""]
    for f in rec["finalists"]:
        extra = []
        if f.get("rank"):
            extra.append(f"hall-of-fame rank {f['rank']}")
        if f.get("seed"):
            extra.append(f"seed {f['seed']} ({f['seed_by']})")
        if len(f["roles"]) > 1 or f["aliases"]:
            extra.append("also " + ", ".join(f["aliases"] or f["roles"][1:]))
        if f["errors"]:
            extra.append("failed under " + ", ".join(f["errors"]))
        lines.append(f"- {f['name']}: `{f['expr']}`" + (f" ({'; '.join(extra)})" if extra
                                                         else ""))
    return "\n".join(lines) + "\n"
