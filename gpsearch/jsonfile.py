"""Reading a user-supplied JSON file as data: size-bounded, parsed by ``json`` only, every
failure a one-line UserError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError


def read_json(path: str | Path, label: str, max_bytes: int):
    """The parsed content of ``path``; ``label`` starts every error message."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{label}: not found")
    if p.stat().st_size > max_bytes:
        raise UserError(f"{label}: larger than {max_bytes} bytes")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{label}: not valid JSON ({str(e).splitlines()[0]})") from None
