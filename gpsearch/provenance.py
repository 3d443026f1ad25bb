"""Which code produced a result: the git commit of the gpsearch checkout and whether its tree had
uncommitted changes. Recorded in every search run's config.json, every compare results.json and
every bench script's JSON, so an artefact can always be traced back to the code that made it.

Outside a git checkout (an installed wheel, git missing) the commit is "unknown" and ``dirty``
is None. Plain subprocess calls to ``git``, no third-party dependency, a short timeout.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """{"commit": 40-hex sha or "unknown", "dirty": bool or None} of the gpsearch checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit or len(commit) != 40:
        return {"commit": "unknown", "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


# Read once, when this module is first imported (the bench scripts import it at their start): a
# result records the code that was loaded, not the HEAD after minutes or hours of later commits.
code_version()
