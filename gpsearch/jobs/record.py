"""The ``--json PATH`` record of a run: the record with the commit of the code that produced it
(``gpsearch.io.code_version``), written atomically; shared by the jobs and the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def write_record(path: str | Path | None, rec: dict, log: Callable[[str], None] = print) -> None:
    """Write ``rec`` and the code's commit to ``path`` and say so (nothing when no path)."""
    if path:
        from gpsearch.io import code_version, write_json

        write_json(path, {**rec, **code_version()})
        log(f"record written to {path}")
