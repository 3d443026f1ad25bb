"""Layer-wise sparsity: how much of each linear goes. ``levels`` is the pure math (uniform, OWL,
bounded tables), ``file`` reads and writes allocation files, ``apply`` resolves an
``--allocation`` spec into per-linear sparsities, ``search`` is the torch-free evolutionary
search over allocations. Imports ``fitness`` (stages) and below.
"""
