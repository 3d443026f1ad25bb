"""gpsearch: discover pruning metrics for large language models by genetic programming.

Python API (``gpsearch/api.py``; imported on first use, so ``import gpsearch`` stays cheap and
does not import torch): ``gpsearch.prune(PruneConfig)``, ``gpsearch.search(SearchSettings)``,
``gpsearch.compare(CompareConfig)``, ``gpsearch.evaluate_zero_shot``.
"""

__version__ = "0.1.0"

_API = {"prune", "PruneConfig", "SearchSettings", "CompareConfig", "RobustnessConfig"}


def __getattr__(name: str):
    import importlib

    if name in ("search", "compare"):  # modules that are also the API functions (callable)
        return importlib.import_module(f"gpsearch.{name}")
    if name in _API:
        return getattr(importlib.import_module("gpsearch.api"), name)
    if name == "evaluate_zero_shot":
        return importlib.import_module("gpsearch.zeroshot").evaluate_zero_shot
    raise AttributeError(f"module 'gpsearch' has no attribute {name!r}")
