"""Pruning a model with a metric: the features every terminal reads (W, X, G, H) and the input
statistics behind them, masks per structure (unstructured rows, N:M), mask fingerprints, and the
``Evaluator`` that scores a tree, applies its masks in place and restores the dense weights.

Modules: ``evaluator``, ``features``, ``stats``, ``masks``, ``ranked`` (one score at many
sparsities), ``fingerprint`` (exact mask hashes, the mask cache and the services the search
engine receives), ``proxy`` (the hurdle's output-error proxy, no forward pass). Imports
``allocation``, ``fitness``, ``model``, ``tree`` and below.
"""
