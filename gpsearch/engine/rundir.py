"""A run directory: the machine state and the human-readable artefacts of one search.

    config.json       everything the run was started with (search, space, model, calibration)
    checkpoint.json   plain-data state after the last completed generation (``checkpoint``)
    log.jsonl         one record per candidate: expression, simplified form, key, fitness, ppl,
                      cache hit kind (key / fingerprint / invalid / hurdle / none), the hurdle's
                      proxy, op, parents, error, seconds
    hall_of_fame.csv  the best distinct trees evaluated so far
    best_tree.json    the best tree in the Pruner-Zero JSON format
    progress.png      fitness vs the best seed per evaluation (gpsearch.plots)
    summary.md        written by the search command at the end
    sessions.jsonl    one record per session of the run (the first and every --resume): the
                      code's commit, the generation it continued after, the generations asked
                      for and the runtime-only settings it ran with (config.json keeps the
                      first session's commit only)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gpsearch.config import WANDA
from gpsearch.engine import checkpoint, rundir_check
from gpsearch.engine.primitives import parse_expr, to_pruner_zero_json
from gpsearch.errors import UserError
from gpsearch.io import write_json, write_text


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- lifecycle ----------------------------------------------------------------------------
    @staticmethod
    def check_new(path: str | Path) -> None:
        """UserError unless ``path`` can become a new run directory (absent, or an empty
        directory); writes nothing."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"run directory {path} exists and is not empty "
                            f"(continue it with --resume {path})")

    @classmethod
    def create(cls, path: str | Path, config: dict) -> "RunDir":
        """A new run directory (refuses one that already holds files: use resume)."""
        run = cls(path)
        cls.check_new(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomic(run.file("config.json"), config)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run directory to resume (it may have no checkpoint yet: a run killed
        during its first generation starts again from its saved config)."""
        run = cls(path)
        if not run.file("config.json").is_file():
            raise UserError(f"cannot resume {run.path}: no config.json (not a run directory)")
        return run

    def has_checkpoint(self) -> bool:
        return self.file("checkpoint.json").is_file()

    def config(self) -> dict:
        return rundir_check.read_json(self.file("config.json"), rundir_check.MAX_CONFIG_BYTES)

    def checkpoint(self) -> dict:
        """The checkpoint as read (``rundir_check.check_checkpoint`` validates it)."""
        return rundir_check.read_json(self.file("checkpoint.json"),
                                      rundir_check.MAX_CHECKPOINT_BYTES)

    # ---- per evaluation / per generation ------------------------------------------------------
    def _append(self, name: str, record: dict) -> None:
        with open(self.file(name), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _records(self, name: str) -> list[tuple[str, dict]]:
        """(line, record) of a JSON-lines file of the run; a line that is not a JSON object (one
        cut by an interruption) is skipped: data, not code."""
        path = self.file(name)
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append((line, rec))
        return out

    def log(self, record: dict) -> None:
        self._append("log.jsonl", record)

    def record_session(self, record: dict) -> None:
        """Append one session's record to sessions.jsonl."""
        self._append("sessions.jsonl", record)

    def sessions(self) -> list[dict]:
        """The session records, in order."""
        return [rec for _, rec in self._records("sessions.jsonl")]

    def truncate_log(self, generation: int) -> None:
        """Drop log records of generations after ``generation`` (written by an interrupted
        generation that the resumed run repeats), atomically."""
        path = self.file("log.jsonl")
        if not path.is_file():
            return
        keep = [line for line, rec in self._records("log.jsonl") if rec.get("gen", 0) <= generation]
        write_text(path, "".join(k + "\n" for k in keep))

    def attach(self, searcher, plot: bool = True) -> None:
        """Hooks: every candidate is logged; after every generation the checkpoint, the hall
        of fame, best_tree.json and (if ``plot``) progress.png are rewritten."""
        searcher.on_evaluation.append(self.log)

        def after_generation(s, stats, seconds):
            checkpoint.save(self.file("checkpoint.json"), s)
            self.write_hall_of_fame(s.hof)
            if plot:
                self.write_progress(s.logbook)

        searcher.on_generation.append(after_generation)

    # ---- artefacts ----------------------------------------------------------------------------
    def write_hall_of_fame(self, hof: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["rank", "fitness", "ppl", "size", "generation", "expression", "key"])
        for i, h in enumerate(hof, 1):
            writer.writerow([i, h["fitness"], h["ppl"], h["size"], h["gen"], h["expr"], h["key"]])
        write_text(self.file("hall_of_fame.csv"), buf.getvalue())

    def write_best_tree(self, expr: str, pset, save_tree=None) -> Path:
        """best_tree.json in Pruner-Zero's format: through ``save_tree(expr, path)`` when given
        (the tree package's writer), else with the torch-free converter of ``primitives``."""
        path = self.file("best_tree.json")
        if save_tree is not None:
            save_tree(expr, path)
        else:
            obj = to_pruner_zero_json(parse_expr(expr, pset))
            write_json(path, obj, default=None)
        return path

    def write_progress(self, logbook: list[dict]) -> Path:
        """progress.png: fitness relative to the best seed per evaluation (``gpsearch.plots``)."""
        from gpsearch.plots import plot_progress

        return plot_progress(self.file("log.jsonl"), self.file("progress.png"))

    def write_json(self, name: str, obj) -> Path:
        """A result record of the run; a dict gets the run's commit and dirty flag (from
        config.json: the code the run started with)."""
        if isinstance(obj, dict):
            cfg = self.config()
            obj = {**obj, **{k: cfg[k] for k in ("commit", "dirty") if k in cfg}}
        write_json(self.file(name), obj)
        return self.file(name)

    def write_summary(self, text: str) -> Path:
        write_text(self.file("summary.md"), text)
        return self.file("summary.md")


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.3e}"


def forward_tokens(config: dict, counters: dict) -> int:
    """Validation tokens the candidates were forwarded on (all stages, all conditions)."""
    ev, conds = config.get("evaluation", {}), max(1, len(config.get("conditions") or []))
    stages = (config.get("search") or {}).get("stages") or ()
    windows = (counters.get("windows", 0) if stages
               else counters.get("evaluated", 0) * ev.get("max_windows", 0))
    return windows * ev.get("seqlen", 0) * conds


def agreement_lines(searcher, best: dict) -> list[str]:
    """Whether the selection fitness (first stage) agrees with the last stage on this run."""
    from gpsearch.engine.agreement import stage_agreement

    a = stage_agreement({r["expr"]: r for r in searcher.cache.values() if "via" not in r},
                        best["expr"])
    if a is None:
        return []
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    rank = a.get("tree_first_stage_rank")
    return [f"- selection vs last stage: over the {a['reached_last_stage']} trees scored on "
            f"every stage, Spearman {fmt(a['spearman'])} between the first-stage and the "
            f"last-stage score ({fmt(a['spearman_best10'])} among the 10 best); the reported "
            "tree ranks "
            + (f"{rank} of {a['evaluated']}" if rank else "(not scored here)")
            + " at the first stage, the selection fitness"
            + ("" if rank == 1 else ": the first stage does not resolve the best trees, the "
               "last stage (more tokens) decides")]


def cost_line(config: dict, c: dict) -> str:
    """The search's cost in units that do not depend on the machine."""
    return (f"- cost (machine-independent): {c['candidates']} candidates proposed, "
            f"{c.get('hurdled', 0)} rejected by the hurdle's proxy, "
            f"{c['evaluated']} first-stage evaluations, {c.get('later_evals', 0)} later-stage "
            f"evaluations, {forward_tokens(config, c):,} candidate forward tokens")


def sessions_line(sessions: list[dict]) -> list[str]:
    """A summary bullet naming each session's generations and commit (only for a resumed run)."""
    if len(sessions) < 2:
        return []
    parts = []
    for i, r in enumerate(sessions):
        start = r.get("after_generation")
        start = 0 if start is None else start + 1
        end = r.get("generations")
        if i + 1 < len(sessions) and sessions[i + 1].get("after_generation") is not None:
            end = sessions[i + 1]["after_generation"]
        commit = str(r.get("commit", "unknown"))[:7] + (" (dirty)" if r.get("dirty") else "")
        parts.append(f"generations {start}-{end} at {commit}")
    return [f"- sessions (resumed run, `sessions.jsonl`): {'; '.join(parts)}"]


def summary_text(config: dict, searcher, rows: list[dict], math_form: str, wall_s: float,
                 best: dict | None = None, tuning: dict | None = None,
                 sessions: list[dict] | None = None) -> str:
    """summary.md: the best formula, its test-split perplexity beside the baselines (``rows``
    from ``gpsearch compare``: dense first), and the search's statistics per generation."""
    best, c, s = best or searcher.best(), searcher.counters, config["settings"]
    lines = [f"# gpsearch search: {config['space']['name']} space, seed {s['seed']}", "",
             f"Best tree (validation fitness {_fmt(best['fitness'])}, generation {best['gen']}):",
             "", f"    {best['expr']}", "", f"As a formula: `{math_form}`  (best_tree.json: "
             "Pruner-Zero format)", ""]
    if rows:
        ev = rows[0]["evaluation"]
        lines += [f"## Test split: {ev['data']}, seqlen {ev['seqlen']}, {ev['windows']} windows "
                  f"({ev['tokens']} tokens), sparsity {s['sparsity']:g} {s['pattern']}", "",
                  f"Calibration (every method): {rows[0]['calibration']}", "",
                  "| method | test PPL | note |", "|---|---|---|"]
        notes = {"dense": "no pruning", "magnitude": "|W|, one threshold per matrix",
                 "wanda": "Wanda, block-sequential (its reference protocol)",
                 "sparsegpt": "SparseGPT (weight updates), block-sequential",
                 WANDA: "Wanda's tree, dense features (as the search)",
                 best["expr"]: "**best tree**, dense features (as the search)"}
        for r in rows:
            ppl = _fmt(r["ppl"]) if not r.get("error") else f"error: {r['error'][:80]}"
            m = r["method"]
            note = notes.get(m) or ("the tree's mask, then least-squares reconstruction of the "
                                    "remaining weights" if m.endswith("+recon") else
                                    "SparseGPT, its mask selection ranked by the tree"
                                    if m.startswith("sparsegpt:") else "")
            lines.append(f"| `{m}` | {ppl} | {note} |")
        by = {r["method"]: r["ppl"] for r in rows if not r.get("error")}
        for ref in (WANDA, "wanda"):
            if by.get(best["expr"]) and by.get(ref) and ref != best["expr"]:
                gain = 100 * (by[ref] - by[best["expr"]]) / by[ref]
                lines.append(f"\nBest tree vs `{ref}`: {_fmt(by[best['expr']])} vs "
                             f"{_fmt(by[ref])} ({'better' if gain > 0 else 'worse'} by "
                             f"{abs(gain):.1f}%).")
        lines.append("")
    total = c["candidates"] or 1
    fitness = config.get("fitness") or (
        f"validation perplexity, {config['evaluation']['max_windows']}"
        f" windows x {config['evaluation']['seqlen']} tokens")
    refill = (f" (refilled up to {s['refill']} rounds while fewer were evaluated)"
              if s.get("refill") else "")
    lines += ["## Search", "", f"- fitness: {fitness}",
              f"- population {s['population']}, {s['offspring']} children per generation{refill}, "
              f"{searcher.generation} generations after the initial one, elite {s['elite']}, "
              f"tournament {s['tournament']}",
              f"- candidates {c['candidates']}: evaluated {c['evaluated']} (failed "
              f"{c['failed']}), cache hits by key {c['key_hits']} and by mask fingerprint "
              f"{c['fp_hits']} ({100 * (c['key_hits'] + c['fp_hits']) / total:.0f}%), invalid "
              f"(rejected before any forward pass) {c['invalid']}"
              + (f"; mask fingerprint FAILED for {c['fp_failed']} (evaluated in full, "
                 "not deduplicated by mask: see `fingerprint_error` in log.jsonl)"
                 if c.get("fp_failed") else ""),
              cost_line(config, c), *agreement_lines(searcher, best),
              *sessions_line(sessions or []),
              f"- wall time of this session: {wall_s / 60:.1f} min (depends on the machine)", "",
              "Diversity: distinct masks in the population, the largest share of it descending "
              "from one root (a seed, `init` or `immigrant`), and the best-to-median gap "
              "(median / best - 1), all on the selection (first-stage) fitness.", "",
              "| gen | best | median | evaluated | hits | masks | top root (share) | gap "
              "| best tree |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in searcher.logbook:
        gap = f"{100 * r['gap']:.1f}%" if r.get("gap") is not None else "-"
        root = f"{r.get('top_root', '-')} ({100 * r.get('top_root_share', 0):.0f}%)"
        lines.append(f"| {r['gen']} | {_fmt(r['best'])} | {_fmt(r['median'])} | "
                     f"{r['evaluated']} | {r['key_hits'] + r['fp_hits']} | "
                     f"{r.get('distinct_masks', '-')} | {root} | {gap} | `{r['best_expr']}` |")
    lines += ["", "## Hall of fame (ranked on the last stage)", "",
              "| rank | fitness | windows | size | generation | tree |",
              "|---|---|---|---|---|---|"]
    for i, h in enumerate(searcher.hof, 1):
        lines.append(f"| {i} | {_fmt(h['fitness'])} | {h.get('windows', '-')} | {h['size']} | "
                     f"{h['gen']} | `{h['expr']}` |")
    if tuning:
        lines += ["", "## Constant tuning (first stage, then every stage)", "",
                  "| from | first stage before -> after | last stage before -> after "
                  "| tuned tree |",
                  "|---|---|---|---|"]
        for t in tuning["trees"]:
            lines.append(f"| `{t['from']}` | {_fmt(t['start_score'])} -> {_fmt(t['score'])} | "
                         f"{_fmt(t['from_final'])} -> {_fmt(t.get('final'))} | `{t['expr']}` |")
        lines.append("\nThe tuned tree " + ("replaces the best tree." if tuning.get("winner")
                                             else "does not beat the best tree: kept as is."))
    return "\n".join(lines) + "\n"
