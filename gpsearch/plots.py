"""Pictures people read: a search's progress and a comparison's perplexity versus sparsity.

``plot_progress``: every evaluated candidate's fitness RELATIVE TO THE BEST SEED TREE (percent;
below 0 = better than every seed), against the number of evaluations, on a linear axis zoomed on
the interesting range: from the best found (minus a margin) up to 10% above the best seed.
Candidates far worse (the random initial trees with PPL 1e4, penalised failures) are not
allowed to set the scale: they are drawn as markers on the top edge and counted in the legend.
The best-so-far line, each generation's median (where it is in range) and one reference line per
seed tree complete it (a seed beyond the range sits on the top edge, its value in the legend).

``plot_ppl_vs_sparsity``: log-scale perplexity per (method, pattern) with the dense line.
``plot_allocation``: per-layer sparsity as bars, when a result carries a per-layer table.
All are written atomically (a temporary file, then a rename) with matplotlib's Agg canvas.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

# Fitness at or above this is capped or failed: gpsearch.engine.result.MAX_FITNESS, which this
# module (a layer below the engine) may not import; tests/test_plots.py keeps the two equal.
PENALTY_FLOOR = 1.0e5


def _figure(size=(7.5, 4.5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def read_log(path: str | Path) -> list[dict]:
    """log.jsonl -> records (a line cut by an interruption is skipped)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def progress_series(records: list[dict]) -> dict:
    """The numbers behind the progress plot (pure; tested): per evaluation (cache hits excluded)
    its index and fitness, the seeds' fitness, best-so-far, and per generation the median of the
    evaluated candidates with the evaluation count at the generation's end."""
    evals, seeds, gen_end, per_gen = [], {}, {}, {}
    for r in records:
        if r.get("hit") is not None:
            continue
        f = r.get("fitness")
        if not isinstance(f, (int, float)) or not math.isfinite(f):
            f = float("inf")
        evals.append(f)
        gen_end[r.get("gen", 0)] = len(evals)
        per_gen.setdefault(r.get("gen", 0), []).append(f)
        if r.get("op") == "seed" and f < PENALTY_FLOOR:
            seeds.setdefault(r.get("simplified") or r.get("expr"), f)
    best, cur = [], float("inf")
    for f in evals:
        cur = min(cur, f)
        best.append(cur)
    med = {}
    for g, fs in per_gen.items():
        fs = sorted(fs)
        n = len(fs)
        med[g] = fs[n // 2] if n % 2 else 0.5 * (fs[n // 2 - 1] + fs[n // 2])
    return {"x": list(range(1, len(evals) + 1)), "fitness": evals, "best": best, "seeds": seeds,
            "gen_end": gen_end, "median": med}


def zoom_range(reference: float, best: float) -> tuple[float, float]:
    """(low, high) in percent relative to ``reference`` (the best seed): from the best found
    (with a margin) to +10% above the reference, or twice the improvement when that is larger.
    Worse seeds and candidates beyond it are drawn on the edge, not allowed to set the scale."""
    lo = min(100.0 * (best / reference - 1.0), 0.0)
    hi = max(10.0, -2.0 * lo)
    span = hi - lo
    return lo - 0.1 * span, hi


def plot_progress(records: list[dict] | str | Path, path: str | Path, title: str = "") -> Path:
    """progress.png from log.jsonl records (or the log file's path)."""
    if not isinstance(records, list):
        records = read_log(records)
    s = progress_series(records)
    fig = _figure((8, 6))
    ax = fig.add_subplot(1, 1, 1)
    finite = [f for f in s["fitness"] if f < PENALTY_FLOOR]
    if not finite:
        ax.text(0.5, 0.5, "no candidate evaluated yet", ha="center", transform=ax.transAxes)
        return _save(fig, path)
    seeds = s["seeds"]
    ref = min(seeds.values()) if seeds else finite[0]
    ref_name = min(seeds, key=seeds.get) if seeds else "the first candidate"
    lo, hi = zoom_range(ref, min(finite))

    def rel(f):
        return 100.0 * (f / ref - 1.0)

    inside = [(x, rel(f)) for x, f in zip(s["x"], s["fitness"]) if rel(f) <= hi]
    above = [x for x, f in zip(s["x"], s["fitness"]) if rel(f) > hi]
    ax.scatter([p[0] for p in inside], [p[1] for p in inside], s=12, color="0.55", alpha=0.7,
               label="evaluated candidate", zorder=2)
    if above:
        ax.scatter(above, [hi - 0.02 * (hi - lo)] * len(above), marker="^", s=16, color="0.75",
                   label=f"{len(above)} worse than {hi:+.0f}% (off scale)", zorder=2)
    ax.step(s["x"], [rel(b) if b < PENALTY_FLOOR else hi for b in s["best"]], where="post",
            color="tab:blue", lw=2, label="best so far", zorder=4)
    gens = sorted(s["median"])
    med = [(s["gen_end"][g], rel(s["median"][g])) for g in gens]
    med_in = [(x, y) for x, y in med if y <= hi]
    if med_in:
        ax.plot([p[0] for p in med_in], [p[1] for p in med_in], "s--", color="tab:orange", ms=4,
                lw=1, label="median of a generation's evaluations", zorder=3)
    colors = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan"]
    for i, (name, f) in enumerate(sorted(seeds.items(), key=lambda kv: kv[1])):
        label = name if len(name) <= 40 else name[:37] + "..."
        off = rel(f) > hi
        ax.axhline(min(rel(f), hi), color=colors[i % len(colors)], ls=":", lw=1.2,
                   label=f"seed {label} ({f:.4g}{', off scale: %+.0f%%' % rel(f) if off else ''})",
                   zorder=1)
    for g in gens[:-1]:
        ax.axvline(s["gen_end"][g] + 0.5, color="0.9", lw=0.8, zorder=0)
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, len(s["x"]) + 1)
    ax.set_xlabel("evaluations (cache hits not counted; faint lines: generation ends)")
    ax.set_ylabel(f"fitness vs best seed (%)\n0 = {ref:.4g}, lower is better")
    best = min(finite)
    ax.set_title(title or f"best {best:.4g} ({rel(best):+.2f}% vs seed {ref_name[:40]})",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    return _save(fig, path)


def plot_ppl_vs_sparsity(rows: list[dict], path: str | Path) -> Path | None:
    """Log-scale PPL per (method, pattern) against sparsity, with the dense model's line;
    rows[0] is dense (compare's rows). None when nothing finite to plot."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows[1:]:
        if r.get("ppl") is not None and math.isfinite(r["ppl"]):
            series.setdefault(f"{r['method']} ({r['pattern']})", []).append((r["sparsity"],
                                                                             r["ppl"]))
    if not series:
        return None
    fig = _figure((7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=label)
    dense = rows[0]["ppl"]
    ax.axhline(dense, color="black", ls="--", lw=1, label=f"dense ({dense:.2f})")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda y, _: f"{y:.4g}")  # 39.7, 1124, not 1.256 x 10^2
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    xs = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}" for x in xs], fontsize=8)
    ev = rows[0].get("evaluation", {})
    ax.set_xlabel("sparsity (fraction of weights set to zero)")
    ax.set_ylabel(f"perplexity, log scale ({ev.get('split', 'test')}, seqlen {ev.get('seqlen')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_allocation(per_layer: dict[str, float], path: str | Path, title: str = "") -> Path:
    """Bars of each pruned linear's sparsity (``{name: fraction of zeros}``) in model order."""
    fig = _figure((max(7.5, 0.06 * len(per_layer)), 4))
    ax = fig.add_subplot(1, 1, 1)
    names = list(per_layer)
    ax.bar(range(len(names)), [100 * per_layer[n] for n in names], width=0.85)
    mean = 100 * sum(per_layer.values()) / max(len(per_layer), 1)
    ax.axhline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.1f}%")
    ticks = range(0, len(names), max(1, len(names) // 24))
    ax.set_xticks(list(ticks))
    ax.set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=5)
    ax.set_ylabel("zeros (%)")
    ax.set_title(title or "per-layer sparsity", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_block_allocation(series, path: str | Path, target: float, title: str = "",
                          requested: list[float] | None = None) -> Path:
    """Sparsity per decoder block, one line per series (``{label: [fraction per block]}``, or
    one list: the achieved sparsities, with ``requested`` beside them), with the target as a
    dashed line."""
    if not isinstance(series, dict):
        series = {"achieved": list(series)}
        if requested is not None:
            series["requested"] = list(requested)
    fig = _figure((max(6.5, 0.22 * max(len(v) for v in series.values()) + 2.5), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for label, vals in series.items():
        ax.plot(range(len(vals)), [100 * v for v in vals], "o-", ms=3, lw=1.2, label=label)
    ax.axhline(100 * target, color="black", ls="--", lw=1, label=f"target {100 * target:.1f}%")
    allv = [v for vals in series.values() for v in vals] + [target]
    pad = max(1.0, 100 * (max(allv) - min(allv)) * 0.15)
    ax.set_ylim(max(0.0, 100 * min(allv) - pad), min(100.0, 100 * max(allv) + pad))
    ax.set_xlabel("decoder block")
    ax.set_ylabel("zeros (%)")
    ax.set_title(title or "sparsity per block", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
