"""Files in and out, and provenance: the one atomic write, the one bounded read, and the commit
of the code that produced a result.

- ``replacing`` is the one atomic write: a temporary path beside the target, renamed over it by
  ``os.replace`` when the writer is done, so a crash never leaves half a file. ``write_text`` and
  ``write_json`` (indented, parents created) write through it; so do the run directory, records,
  checkpoints, allocation and tree files, safetensors caches and bench files (``gpsearch.plots``,
  a sibling layer that may not import this one, has its own three lines for its pictures).
- ``read_text`` is the one bounded read: a regular file of at most ``max_bytes``, decoded; it
  refuses with ``Refused`` (why, for the caller's own one-line message). ``read_json`` reads a
  user-supplied JSON file as data with it: parsed by ``json`` only, every failure a one-line
  ``UserError`` naming the file.
- ``code_version`` is the git commit of the gpsearch checkout and whether its tree had
  uncommitted changes; recorded in every search run's config.json, every compare results.json and
  every bench script's JSON. Outside a git checkout (an installed wheel, git missing) the commit
  is "unknown" and ``dirty`` is None. Plain subprocess calls to ``git`` with a short timeout.
- ``relative_path`` writes a path relative to a base (the repository or the run directory) when
  it lies inside it, so that committed results hold no machine's absolute paths.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
from pathlib import Path

from gpsearch.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def replacing(path: str | Path):
    """A temporary path beside ``path`` (``NAME.tmp``) to write to; renamed over ``path`` when
    the block ends without an exception (after one, ``path`` is unchanged)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    yield tmp
    os.replace(tmp, path)


def write_text(path: str | Path, text: str, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``fsync``: on disk before the rename."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | Path, obj, default=str) -> None:
    """Write ``obj`` as indented JSON and a newline to ``path`` atomically (parents created);
    ``default``: what ``json.dumps`` makes of other objects (None: they are an error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


class Refused(UserError):
    """Why ``read_text`` refused a file: ``reason`` is "missing", "not_file", "too_big" (``size``
    bytes), "unreadable" or "not_text" (``error``: the OSError or UnicodeDecodeError)."""

    def __init__(self, path: Path, reason: str, size: int = 0, error: Exception | None = None):
        super().__init__(f"{path}: {reason.replace('_', ' ')}")
        self.reason, self.size, self.error = reason, size, error


def read_text(path: str | Path, max_bytes: int, encoding: str = "utf-8") -> str:
    """The text of ``path``: a regular file of at most ``max_bytes`` bytes (never more is read),
    decoded with ``encoding``; anything else raises ``Refused``."""
    p = Path(path)
    try:
        if not p.exists():
            raise Refused(p, "missing")
        if not p.is_file():
            raise Refused(p, "not_file")
        size = p.stat().st_size
        if size > max_bytes:
            raise Refused(p, "too_big", size)
        with open(p, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise Refused(p, "unreadable", error=e) from None
    if len(raw) > max_bytes:  # it grew since the stat
        raise Refused(p, "too_big", len(raw))
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise Refused(p, "not_text", error=e) from None


def read_json(path: str | Path, label: str, max_bytes: int):
    """The parsed content of ``path``; ``label`` starts every error message."""
    try:
        text = read_text(path, max_bytes)
    except Refused as e:
        if e.reason == "too_big":
            raise UserError(f"{label}: larger than {max_bytes} bytes") from None
        if e.reason == "unreadable":
            raise UserError(f"{label}: cannot be read ({e.error.strerror or e.error})") from None
        if e.reason == "not_text":
            raise UserError(f"{label}: not valid JSON ({str(e.error).splitlines()[0]})") from None
        raise UserError(f"{label}: not found") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise UserError(f"{label}: not valid JSON ({str(e).splitlines()[0]})") from None


def relative_path(path: str | Path, base: str | Path = ROOT) -> str:
    """``path`` relative to ``base`` when it lies inside it, else unchanged (as text)."""
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


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
