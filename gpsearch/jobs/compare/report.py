"""The files of ``gpsearch compare``: results.json (everything), results.csv (one row per run,
configs flattened), results.md (calibration and evaluation config in the header, a PPL pivot table
and the detailed table) and, when several sparsities were run, ppl_vs_sparsity.png (log scale)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from gpsearch.io import relative_path, write_json, write_text

CSV_FIELDS = ("method", "pattern", "sparsity", "ppl", "achieved_sparsity", "prune_s", "features_s",
              "error", "model", "tree", "recipe", "options")


def _finite(obj):
    """JSON-safe copy: non-finite floats become the strings 'inf' / 'nan'."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def csv_text(rows: list[dict]) -> str:
    calib_keys = list(rows[0]["calibration"]) if rows else []
    eval_keys = list(rows[0]["evaluation"]) if rows else []
    tasks = zero_shot_tasks(rows)
    zs = [(t, k) for t in tasks for k in ("acc", "acc_stderr", "n")]
    header = (list(CSV_FIELDS) + [f"zs_{t}_{k}" for t, k in zs] + [f"calib_{k}" for k in calib_keys]
              + [f"eval_{k}" for k in eval_keys])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        base = [json.dumps(r.get(k) or {}, sort_keys=True) if k == "options" else
                ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS]
        accs = [(r.get("zero_shot") or {}).get(t, {}).get(k, "") for t, k in zs]
        w.writerow(base + accs + [r["calibration"].get(k, "") for k in calib_keys]
                   + [r["evaluation"].get(k, "") for k in eval_keys])
    return buf.getvalue()


def zero_shot_tasks(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(t for r in rows for t in (r.get("zero_shot") or {})))


def zero_shot_lines(rows: list[dict]) -> list[str]:
    """'## Zero-shot accuracy': one row per run, accuracy ± standard error per task."""
    from gpsearch.fitness.zeroshot import fmt_acc

    tasks = zero_shot_tasks(rows)
    if not tasks:
        return []
    n = {t: max((r.get("zero_shot") or {}).get(t, {}).get("n", 0) for r in rows) for t in tasks}
    lines = ["", "## Zero-shot accuracy (lm-eval, accuracy ± standard error)", "",
             "| method | pattern | sparsity | " + " | ".join(f"{t} (n={n[t]})" for t in tasks)
             + " |", "|---|---|---:|" + "---:|" * len(tasks)]
    for r in rows:
        zs = r.get("zero_shot") or {}
        lines.append(f"| {r['method']} | {r['pattern']} | {r['sparsity']:g} | "
                     + " | ".join(fmt_acc(zs.get(t)) for t in tasks) + " |")
    return lines


def _ppl(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 1e4 else f"{x:.3e}"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown_text(result: dict, final: bool) -> str:
    cfg, rows = result["config"], result["rows"]
    calib, ev = rows[0]["calibration"], rows[0]["evaluation"]
    lines = ["# gpsearch compare" + ("" if final else " (in progress)"), "",
             f"- model: `{cfg['model']}` ({cfg['dtype']}, {cfg['device']}); pruned: "
             f"{', '.join(result['pruned_modules'])} in every decoder block",
             f"- calibration (the same for every method): data `{calib['data']}`, "
             f"{calib['nsamples']} samples x {calib['seqlen']} tokens, seed {calib['seed']}, "
             f"batch size {calib['batch_size']}",
             f"- evaluation: data `{ev['data']}`, **{ev['split']}** split, seqlen {ev['seqlen']}, "
             f"{ev['windows']} windows ({ev['tokens']} tokens), batch size {ev['batch_size']}",
             "- sparsity = fraction of weights set to zero; PPL = exp(mean token NLL) over the "
             "windows; tree methods use "
             f"{cfg['tree_features']} features unless they read no activation statistics",
             f"- created {result['created']}", ""]
    cols = list(dict.fromkeys(f"{r['pattern']} @ {r['sparsity']:g}" for r in rows[1:]))
    methods = list(dict.fromkeys(r["method"] for r in rows[1:]))
    cell = {(r["method"], f"{r['pattern']} @ {r['sparsity']:g}"): r for r in rows[1:]}
    lines += ["## Perplexity", "", f"Dense: **{_ppl(rows[0]['ppl'])}**", ""]
    if cols:
        lines += ["| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for m in methods:
            vals = []
            for c in cols:
                r = cell.get((m, c))
                vals.append("" if r is None else "error" if r["error"] else _ppl(r["ppl"]))
            lines.append(f"| {m} | " + " | ".join(vals) + " |")
        lines.append("")
    lines += ["## All runs", "",
              "| method | pattern | sparsity | PPL | achieved sparsity | pruning s | features s "
              "| error |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        err = (r["error"] or "").replace("|", "/")
        lines.append(f"| {r['method']} | {r['pattern']} | {r['sparsity']:g} | {_ppl(r['ppl'])} | "
                     f"{_num(r['achieved_sparsity'], '.4f')} | {_num(r['prune_s'], '.1f')} | "
                     f"{_num(r['features_s'], '.1f')} | {err} |")
    lines += zero_shot_lines(rows)
    recipes = {r["method"]: r["recipe"] for r in rows if r.get("recipe")}
    if recipes:
        lines += ["", "## Recipes", ""] + [f"- {m}: `{p}`" for m, p in recipes.items()]
    trees = {r["method"]: r["tree"] for r in rows if r.get("tree")}
    if trees:
        lines += ["", "## Trees", ""] + [f"- {m}: `{t}`" for m, t in trees.items()]
    opts = {r["method"]: r["options"] for r in rows if r.get("options")}
    if opts:
        lines += ["", "## Method options", ""] + [f"- {m}: `{json.dumps(o)}`"
                                                  for m, o in opts.items()]
    allocs = [r for r in rows if r.get("block_sparsity")]
    if allocs:
        lines += ["", "## Layer-wise allocations (achieved sparsity per block)", ""]
        for r in allocs:
            bs = r["block_sparsity"]
            plot = f" ([plot]({r['plot']}))" if r.get("plot") else ""
            lines.append(f"- {r['method']} {r['pattern']} @ {r['sparsity']:g}: "
                         f"{min(bs):.3f}..{max(bs):.3f}{plot}: " + " ".join(f"{b:.3f}" for b in bs))
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> bool:
    """PPL versus sparsity (``gpsearch.plots``); False if nothing to plot."""
    from gpsearch.plots import plot_ppl_vs_sparsity

    return plot_ppl_vs_sparsity(rows, path) is not None


def write_reports(result: dict, out: Path, final: bool = True) -> dict:
    """Write every file; returns {kind: path}. The PNG only when final and several sparsities.
    results.json names the files relative to ``out`` (no machine's absolute path)."""
    out = Path(out)
    files = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    write_text(files["csv"], csv_text(result["rows"]))
    write_text(files["md"], markdown_text(result, final))
    sparsities = {r["sparsity"] for r in result["rows"][1:]}
    if final and len(sparsities) > 1 and plot(result["rows"], out / "ppl_vs_sparsity.png"):
        files["png"] = out / "ppl_vs_sparsity.png"
    paths = {k: str(v) for k, v in files.items()}
    recorded = {k: relative_path(v, out) for k, v in files.items()}
    write_json(files["json"], _finite({**result, "files": recorded, "final": final}))
    return paths
