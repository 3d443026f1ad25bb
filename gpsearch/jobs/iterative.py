"""``gpsearch iterative``: iterative pruning with masked fine-tuning, round by round, in a
resumable run directory (the rounds themselves: ``gpsearch.methods.iterative``). The config is
``IterativeConfig`` (recorded in the run's run.json; its defaults are the CLI's)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gpsearch.methods.iterative import IterativeConfig

__all__ = ["IterativeConfig", "run_iterative"]


def run_iterative(config: IterativeConfig | dict | None = None,
                  save_dir: str | Path | None = None, resume: str | Path | None = None,
                  evaluator=None, progress: bool = True, log: Callable[[str], None] = print,
                  max_rounds: int | None = None) -> dict:
    """Run a new iterative pruning run (``config``; its metric is checked before any model is
    loaded) into ``save_dir`` (default runs/iterative_<time>), or continue ``resume`` with its
    saved config (``config`` is then ignored); returns the run state (config, dense PPL, history,
    summary). ``evaluator``: a resident model to use; ``max_rounds``: stop after this many."""
    from gpsearch.methods import iterative
    from gpsearch.tree import load_tree

    cfg = None if resume else config
    if cfg is not None:
        metric = cfg.metric if isinstance(cfg, IterativeConfig) else cfg.get("metric")
        if metric is not None:
            load_tree(metric)  # a bad metric fails before the model is loaded
    return iterative.run_iterative(cfg, save_dir=save_dir, resume=resume, evaluator=evaluator,
                                   progress=progress, log=log, max_rounds=max_rounds)
