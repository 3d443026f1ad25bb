"""Rows from earlier ``gpsearch compare`` runs in a new table, under seed 002's check list.

Numbers from different calibration configurations (data, samples, sequence length, seed, batch
size), evaluation settings (data, split, seqlen, windows) or models are not comparable, and
putting them in one table is the classic mistake seed 002 warns about. So an included
``results.json`` must match the comparison exactly; otherwise the comparison refuses, unless the
user asks for a mixed table (``--allow-mixed-calibration``), in which case every foreign row is
marked and the report says so. Files are read as JSON data only, with a size limit.
"""

from __future__ import annotations

from pathlib import Path

from gpsearch.errors import UserError
from gpsearch.io import read_json

MAX_BYTES = 50_000_000
EVAL_KEYS = ("data", "split", "seqlen", "max_windows")


def _differences(row: dict, model: str, calib: dict, evaluation: dict) -> list[str]:
    out = []
    if row.get("model") != model:
        out.append(f"model {row.get('model')!r} (here {model!r})")
    if row.get("calibration") != calib:
        out.append(f"calibration {row.get('calibration')} (here {calib})")
    theirs = row.get("evaluation") or {}
    for k in EVAL_KEYS:
        if theirs.get(k) != evaluation.get(k):
            out.append(f"evaluation {k} {theirs.get(k)!r} (here {evaluation.get(k)!r})")
    return out


def load_included(paths: list[str], model: str, calib: dict, evaluation: dict,
                  allow_mixed: bool) -> tuple[list[dict], list[str]]:
    """The non-dense rows of each results.json (marked ``included_from``) and report notes.
    UserError (one line) for an unreadable file, or a configuration mismatch not allowed."""
    rows, notes = [], []
    for spec in paths:
        path = Path(spec)
        if path.is_dir():
            path = path / "results.json"
        if not path.is_file():
            raise UserError(f"--include {spec}: no results.json there")
        data = read_json(path, f"--include {path}", MAX_BYTES)
        listed = data.get("rows") if isinstance(data, dict) else None
        if not isinstance(listed, list) or not all(
                isinstance(r, dict) and isinstance(r.get("method"), str) for r in listed):
            raise UserError(f"--include {path}: not a gpsearch compare results.json")
        found = [r for r in listed if r["method"] != "dense"]
        for r in found:
            diff = _differences(r, model, calib, evaluation)
            if diff and not allow_mixed:
                raise UserError(f"--include {path}: row {r['method']} was measured with "
                                f"{'; '.join(diff)}: refusing to mix configurations in one "
                                "table (pass --allow-mixed-calibration to do it anyway)")
            rows.append({**r, "included_from": str(path), "mixed": bool(diff),
                         "method": r["method"] + (" [mixed]" if diff else "")})
        mixed = sum(r["mixed"] for r in rows[-len(found):]) if found else 0
        notes.append(f"{len(found)} row(s) included from {path}"
                     + (f"; {mixed} of them under ANOTHER configuration (marked [mixed]): "
                        "not comparable with the rest" if mixed else ", same configuration"))
    return rows, notes
