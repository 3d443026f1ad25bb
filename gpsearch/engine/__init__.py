"""The search engine: genetic programming over metric trees with DEAP. Torch-free and Ray-free,
not even transitively: everything that needs tensors (simplification, canonical keys, mask
fingerprints, evaluation) is injected by the search application (``gpsearch.jobs.search``).

Modules: ``space`` (search spaces as data), ``primitives`` (DEAP primitive sets), ``variation``
(crossover, mutation, immigrants), ``loop`` (the ``Searcher``: step / run), ``generation_stats``
(the logbook row of a generation: counters, diversity), ``evaluation`` (dedup,
fingerprints, the hurdle, staged scoring of one generation), ``result`` (the record of one
evaluation, ``PENALTY``), ``conditions`` (evaluation conditions as data), ``tune`` (constant
tuning), ``funnel`` (the funnel's noise-aware choice, pure), ``agreement`` (first vs last
stage rank agreement, pure), ``checkpoint``, ``rundir`` and
``rundir_check`` (the resumable run directory, validated on read).
"""
