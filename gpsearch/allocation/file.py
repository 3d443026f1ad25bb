"""Allocation files (untrusted JSON, read by our own checks; see ``allocation.Allocation``):

    {"format": "gpsearch-allocation", "version": 1, "sparsity": 0.7,
     "blocks": [0.66, 0.71, ...],                  # one sparsity per decoder block
     "kinds": {"mlp.down_proj": [0.6, ...]},      # optional: per linear kind, per block
     "method": "search", "info": {...}}            # optional: where it came from

Every ratio must be in [0, 1). The block count and the total (weighted by the model's parameter
counts, within 0.001 of "sparsity") are checked against the model by ``allocation.
check_allocation``. Any problem is a one-line ``UserError``.
"""

from __future__ import annotations

import math
from pathlib import Path

from gpsearch.allocation.levels import Allocation
from gpsearch.errors import UserError
from gpsearch.io import read_json, write_json

FORMAT = "gpsearch-allocation"
VERSION = 1
MAX_BYTES = 1 << 20
KEYS = {"format", "version", "sparsity", "blocks", "kinds", "method", "info"}


def _ratio(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"{where}: expected a number, got {v!r}")
    if not 0.0 <= v < 1.0:
        raise UserError(f"{where}: sparsity {v} is outside [0, 1)")
    return float(v)


def _ratios(v, where: str) -> list[float]:
    if not isinstance(v, list) or not v:
        raise UserError(f"{where}: expected a non-empty list of sparsities")
    return [_ratio(x, f"{where}[{i}]") for i, x in enumerate(v)]


def parse_allocation(obj, source: str = "allocation") -> Allocation:
    """A parsed JSON value -> Allocation (structure, types and ranges checked)."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object")
    unknown = set(obj) - KEYS
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                        f"known: {', '.join(sorted(KEYS))}")
    if obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise UserError(f"{source}: not a {FORMAT} version {VERSION} file")
    if "sparsity" not in obj or "blocks" not in obj:
        raise UserError(f"{source}: needs 'sparsity' and 'blocks'")
    target = _ratio(obj["sparsity"], f"{source}: sparsity")
    blocks = _ratios(obj["blocks"], f"{source}: blocks")
    kinds = obj.get("kinds", {})
    if not isinstance(kinds, dict):
        raise UserError(f"{source}: 'kinds' must be an object of kind -> list")
    parsed = {}
    for k, v in kinds.items():
        if not isinstance(k, str) or not k:
            raise UserError(f"{source}: bad linear kind {k!r}")
        parsed[k] = _ratios(v, f"{source}: kinds.{k}")
        if len(parsed[k]) != len(blocks):
            raise UserError(f"{source}: kinds.{k} has {len(parsed[k])} blocks, 'blocks' "
                            f"{len(blocks)}")
    method = obj.get("method", "file")
    if not isinstance(method, str) or len(method) > 100:
        raise UserError(f"{source}: 'method' must be a short string")
    info = obj.get("info", {})
    if not isinstance(info, dict):
        raise UserError(f"{source}: 'info' must be an object")
    return Allocation(target, blocks, parsed, method, info)


def read_allocation(path: str | Path) -> Allocation:
    p = Path(path)
    obj = read_json(p, f"allocation file {p}", MAX_BYTES)
    return parse_allocation(obj, f"allocation file {p}")


def allocation_json(alloc: Allocation) -> dict:
    d = {"format": FORMAT, "version": VERSION, **alloc.to_dict()}
    return d


def write_allocation(alloc: Allocation, path: str | Path) -> Path:
    """Write atomically (a temporary file, then a rename)."""
    p = Path(path)
    write_json(p, allocation_json(alloc), default=None)
    return p
