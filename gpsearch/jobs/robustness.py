"""Robustness of a metric tree: its fitness under other evaluation conditions, on the resident
model (``gpsearch robustness TREE``; a section of every search summary).

A condition (``search/conditions.py``) rescales terminals (W, X, G, H by a positive factor,
applied to the feature tensor before the tree is evaluated), swaps in the features of another
calibration size or seed, or changes the pattern / sparsity. For each condition the tree and a
reference tree (Wanda's ``mul(W, sqrt(X))`` by default) are turned into masks and scored by
perplexity on the evaluation windows. Masks are hashed: a condition whose masks equal ones
already scored reuses that perplexity with no forward pass (so an invariant tree costs one mask
computation per condition), and the report says whether each tree's masks are exactly those of
its baseline (an exact invariance, not a close number).

Per condition: ``ppl`` of tree and reference, the tree's change from its baseline, its
``advantage`` = 1 - ppl_tree / ppl_reference, and ``retained`` = advantage / baseline advantage.
"""

from __future__ import annotations

import dataclasses
import time

from gpsearch.config import WANDA, CalibConfig, EvalConfig
from gpsearch.engine.conditions import Condition, default_conditions, parse_conditions
from gpsearch.errors import UserError
from gpsearch.model.load import EMBEDDED


@dataclasses.dataclass
class RobustnessConfig:
    """What ``robustness`` measures; the CLI's defaults are these."""

    tree: str = "wanda"  # trees/NAME.json, a bare name, a .json path or a prefix expression
    reference: str | None = WANDA  # None: no reference tree (no advantage columns)
    conditions: str | None = None  # comma-separated; None: default_conditions of the trees
    sparsity: float = 0.5
    pattern: str = "unstructured"
    scope: str = "row"
    model: str = EMBEDDED
    calib: CalibConfig = dataclasses.field(default_factory=CalibConfig)
    evaluation: EvalConfig = dataclasses.field(
        default_factory=lambda: EvalConfig(split="test", max_windows=64))
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None
    out: str | None = None  # write robustness.md and robustness.json here


def run_robustness(cfg: RobustnessConfig, evaluator=None, progress: bool = True) -> dict:
    """``gpsearch robustness``: check the inputs, load the model (unless ``evaluator``), report,
    write ``cfg.out``/robustness.{md,json} (with the code's commit). Returns the record."""
    from gpsearch.io import code_version, write_json
    from gpsearch.tree import load_tree

    version = code_version()  # the code that runs: read now, not after minutes of edits
    load_tree(cfg.tree)
    if cfg.reference:
        load_tree(cfg.reference)
    check_conditions_text(cfg.conditions)
    for c in plan_conditions(cfg.conditions, {"W", "X", "G"}):
        pattern_of(c, cfg)
    if evaluator is None:
        from gpsearch.pruning.evaluator import Evaluator

        evaluator = Evaluator(cfg.model, cfg.calib, cfg.dtype, cfg.device, cfg.cache_dir,
                              progress=progress)
    rec = robustness(evaluator, cfg, cfg.evaluation, progress=progress)
    rec.update(command="robustness", created=time.strftime("%Y-%m-%dT%H:%M:%S"), **version)
    rec["markdown"] = markdown(rec)
    if cfg.out:
        from pathlib import Path

        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "robustness.md").write_text(rec["markdown"])
        write_json(Path(cfg.out) / "robustness.json", rec)
    return rec


def plan_conditions(text: str | None, terminals: set[str]) -> list[Condition]:
    conds = (parse_conditions(text, ("rescale", "nsamples", "seed", "pattern", "sparsity"))
             if text else default_conditions(terminals))
    # every change is measured against the baseline: scored first
    return [Condition()] + [c for c in conds if c != Condition()]


def robustness(evaluator, cfg: RobustnessConfig, ev: EvalConfig, progress: bool = False,
               dense_ppl: float | None = None) -> dict:
    """The report record: {"config", "dense_ppl", "rows", "seconds"} (see the module docstring).
    The evaluator's model is dense before and after."""
    from gpsearch.pruning.masks import check_sparsity, parse_pattern
    from gpsearch.tree import load_tree, terminals_used, to_prefix

    tree = load_tree(cfg.tree)
    ref = load_tree(cfg.reference) if cfg.reference else None
    check_sparsity(cfg.sparsity)
    parse_pattern(cfg.pattern, cfg.sparsity, cfg.scope)
    used = set(terminals_used(tree)) | (set(terminals_used(ref)) if ref is not None else set())
    conds = plan_conditions(cfg.conditions, used)
    for c in conds:  # every pattern and sparsity checked before the first forward pass
        pattern_of(c, cfg)
    t0 = time.perf_counter()
    scored: dict[str, float] = {}  # mask digest -> ppl
    trees = {"tree": tree, **({"reference": ref} if ref is not None else {})}
    base_digest: dict[str, str] = {}
    rows = []
    from tqdm.auto import tqdm

    for c in tqdm(conds, desc="robustness", disable=not progress, leave=False):
        t1 = time.perf_counter()
        row = {"condition": c.label(), **c.to_dict()}
        for role, node in trees.items():
            digest, ppl = score_condition(evaluator, node, c, cfg, ev, scored)
            if c == Condition():
                base_digest[role] = digest
            row[f"{role}_ppl"] = ppl
            row[f"{role}_masks_as_baseline"] = digest == base_digest.get(role)
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
        if progress:  # each row as soon as it is known (a long run on a busy machine)
            tqdm.write(f"{row['condition']}: tree PPL {row['tree_ppl']:.4f}" +
                       (f", reference PPL {row['reference_ppl']:.4f}" if ref is not None else "") +
                       f" ({row['seconds']:.0f} s)")
    if dense_ppl is None:  # last: the rows matter more than the dense line
        dense_ppl = evaluator.perplexity(ev, progress=False)["ppl"]
    base = next(r for r in rows if r["condition"] == "baseline")
    for row in rows:
        row["tree_change"] = row["tree_ppl"] / base["tree_ppl"] - 1.0
        if ref is not None:
            row["advantage"] = 1.0 - row["tree_ppl"] / row["reference_ppl"]
            b = 1.0 - base["tree_ppl"] / base["reference_ppl"]
            row["retained"] = row["advantage"] / b if b > 0 else None
    return {"config": {"tree": to_prefix(tree), "reference": to_prefix(ref) if ref else None,
                       "sparsity": cfg.sparsity, "pattern": cfg.pattern, "scope": cfg.scope,
                       "conditions": [c.label() for c in conds], "model": evaluator.lm.spec,
                       "calibration": evaluator.calib.to_dict(), "evaluation": ev.to_dict(),
                       "fitness": "perplexity on the evaluation windows"},
            "dense_ppl": dense_ppl, "rows": rows, "seconds": time.perf_counter() - t0}


def pattern_of(c: Condition, cfg) -> tuple:
    """(sparsity, Pattern) of condition ``c`` on top of ``cfg``'s sparsity, pattern and scope
    (an N:M pattern alone brings its own sparsity); a bad one is a UserError."""
    from gpsearch.pruning.masks import check_sparsity, parse_pattern

    pattern = c.pattern or cfg.pattern
    sparsity = c.sparsity if c.sparsity is not None else cfg.sparsity
    if c.pattern and ":" in c.pattern and c.sparsity is None:
        n, _, m = c.pattern.partition(":")
        sparsity = int(n) / int(m) if n.isdigit() and m.isdigit() and int(m) else sparsity
    check_sparsity(sparsity)
    return sparsity, parse_pattern(pattern, sparsity, cfg.scope)


def score_condition(evaluator, node, c: Condition, cfg, ev: EvalConfig, scored: dict,
                    windows=None) -> tuple[str, float]:
    """(digest of the masks, perplexity) of ``node`` under condition ``c`` at ``cfg``'s sparsity,
    pattern and scope (a ``RobustnessConfig`` or anything with those three). ``scored`` (mask
    digest -> perplexity) is filled and reused: one dict per set of windows. ``windows``: a
    [n, seqlen] tensor to measure on instead of ``ev``'s windows (the funnel's held-apart
    slice)."""
    from gpsearch.fitness.perplexity import perplexity
    from gpsearch.pruning.fingerprint import digest, pack

    sparsity, pattern = pattern_of(c, cfg)
    calib = None
    if c.changes_features():
        calib = dataclasses.replace(
            evaluator.calib, **{k: v for k, v in (("nsamples", c.nsamples), ("seed", c.seed))
                                if v is not None})
    with evaluator.condition(c.factors, calib):
        masks = evaluator.compute_masks(node, sparsity, pattern)
    d = digest({n: pack(m) for n, m in masks.items()})
    if d not in scored:
        try:
            evaluator.apply_masks(masks)
            scored[d] = (evaluator.perplexity(ev, progress=False) if windows is None else
                         perplexity(evaluator.model, windows, ev.batch_size))["ppl"]
        finally:
            evaluator.restore()
    return d, scored[d]


def markdown(rec: dict, title: str | None = None) -> str:
    """The report as a markdown table (numbers rounded for reading; the JSON keeps them all)."""
    cfg, ref = rec["config"], rec["config"]["reference"]
    lines = [f"### {title}" if title else "### Robustness", "",
             f"tree `{cfg['tree']}`" + (f" vs reference `{ref}`" if ref else "") +
             f"; {cfg['model']}, {cfg['sparsity']:g} {cfg['pattern']} ({cfg['scope']}); "
             f"calibration {cfg['calibration']['nsamples']} x {cfg['calibration']['seqlen']} "
             f"seed {cfg['calibration']['seed']}; PPL on {cfg['evaluation']['split']} "
             f"{cfg['evaluation']['max_windows'] or 'all'} windows x "
             f"{cfg['evaluation']['seqlen']}; dense {rec['dense_ppl']:.3f}", ""]
    head = "| condition | tree PPL | change | masks = baseline |"
    sep = "|---|---:|---:|:---:|"
    if ref:
        head += " reference PPL | ref. masks = baseline | advantage | retained |"
        sep += "---:|:---:|---:|---:|"
    lines += [head, sep]
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    for r in rec["rows"]:
        line = (f"| {r['condition']} | {r['tree_ppl']:.3f} | {100 * r['tree_change']:+.2f}% | "
                f"{yes(r['tree_masks_as_baseline'])} |")
        if ref:
            kept = "n/a" if r["retained"] is None else f"{100 * r['retained']:.1f}%"
            line += (f" {r['reference_ppl']:.3f} | {yes(r['reference_masks_as_baseline'])} | "
                     f"{100 * r['advantage']:+.2f}% | {kept} |")
        lines.append(line)
    lines.append("")
    lines.append("advantage = 1 - PPL(tree) / PPL(reference); retained = advantage / baseline "
                 "advantage (n/a when the tree does not beat the reference at baseline).")
    return "\n".join(lines) + "\n"


def check_conditions_text(text: str | None) -> None:
    """Parse ``text`` now (a bad list is a user error before any model loads)."""
    if text:
        for c in parse_conditions(text, ("rescale", "nsamples", "seed", "pattern", "sparsity")):
            if c.pattern and ":" not in c.pattern and c.pattern.strip().lower() != "unstructured":
                raise UserError(f"condition {c.label()}: unknown pattern {c.pattern!r}")
