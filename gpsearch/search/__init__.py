"""The evolutionary search over metric trees (DEAP). Never imports torch or ray, not even
transitively: everything that needs tensors (simplification, canonical keys, fingerprints,
evaluation) is injected by the caller (``gpsearch/search_run.py``)."""
