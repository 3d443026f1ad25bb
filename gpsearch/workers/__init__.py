"""Backends behind ``evaluate_many(expressions) -> results``: serial in-process (``serial``),
Ray actors that keep the model resident (``actor``; ``ray_backend``, the scheduler, and
``ray_nodes``, placement and node bookkeeping: the only modules of gpsearch that import Ray),
several backends as one (``multi``), and ``factory`` that builds one from the search settings."""
