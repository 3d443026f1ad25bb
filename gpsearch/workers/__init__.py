"""Backends behind ``evaluate_many(expressions) -> results``: serial in-process, and Ray actors
(``ray_backend``, the only module of gpsearch that imports Ray)."""
