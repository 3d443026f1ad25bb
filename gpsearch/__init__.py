"""gpsearch: discover pruning metrics for large language models by genetic programming.

The Python API (defined in ``gpsearch/api.py``, imported on first use so that ``import gpsearch``
stays cheap and does not import torch):

- ``gpsearch.prune(PruneConfig)``: prune with one metric tree, measure, optionally save;
- ``gpsearch.search(SearchSettings, out=, resume=)``: a genetic-programming metric search;
- ``gpsearch.compare(CompareConfig)``: methods and trees under one calibration, test split;
- ``gpsearch.allocate(AllocateSettings, out=, resume=)``: search a layer-wise allocation;
- ``gpsearch.robustness(RobustnessConfig)``: a tree under perturbed conditions;
- ``gpsearch.funnel(FunnelConfig)``: a finished search's best trees under wider conditions;
- ``gpsearch.iterative / tiers / structured / lora``: schedules, structured pruning, recovery;
- ``gpsearch.load_tree(spec)``, ``gpsearch.evaluate_zero_shot(model, tokenizer, tasks)``.

Layers, top to bottom (docs/DESIGN.md; checked by ``lint-imports``): cli, commands -> api ->
jobs -> workers, methods -> engine, pruning -> allocation -> fitness -> model -> tree -> io,
plots, config -> errors.
"""

from gpsearch.config import VERSION as __version__

__all__ = ["prune", "search", "compare", "allocate", "robustness", "structured", "tiers",
           "lora", "iterative", "funnel", "load_tree", "evaluate_zero_shot", "PruneConfig",
           "SearchSettings", "CompareConfig", "AllocateSettings", "RobustnessConfig",
           "StructuredConfig", "TiersConfig", "LoraConfig", "IterativeConfig", "FunnelConfig",
           "__version__"]


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("gpsearch.api"), name)
    raise AttributeError(f"module 'gpsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
