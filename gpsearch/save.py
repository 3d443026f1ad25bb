"""Save a pruned model as a Hugging Face directory that ``from_pretrained`` loads back."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .models import LoadedModel


def save_pruned(lm: LoadedModel, out_dir: str | Path, record: dict) -> Path:
    """safetensors weights + config + tokenizer + ``gpsearch_record.json`` (tree and config)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--save directory {out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(out, safe_serialization=True)
    lm.tokenizer.save_pretrained(out)
    (out / "gpsearch_record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out
