"""Save a pruned model as a Hugging Face directory that ``from_pretrained`` loads back."""

from __future__ import annotations

from pathlib import Path

from gpsearch.errors import UserError
from gpsearch.io import write_json
from gpsearch.model.load import LoadedModel


def check_save_dir(out_dir: str | Path | None) -> None:
    """UserError if ``out_dir`` exists and is not empty (checked before any work is done)."""
    out = Path(out_dir) if out_dir else None
    if out is not None and out.exists() and any(out.iterdir()):
        raise UserError(f"--save directory {out} exists and is not empty")


def save_pruned(lm: LoadedModel, out_dir: str | Path, record: dict) -> Path:
    """safetensors weights + config + tokenizer + ``gpsearch_record.json`` (tree and config)."""
    check_save_dir(out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(out, safe_serialization=True)
    lm.tokenizer.save_pretrained(out)
    write_json(out / "gpsearch_record.json", record)
    return out
