"""The application flows that the Python API runs: the only package that wires the rest.

``prune`` (one tree at one sparsity), ``compare/`` (methods and trees on one calibration, the
report), ``search/`` (plan, run, final pick, report of a metric search), ``allocate`` (search a
layer-wise allocation), ``robustness`` (a tree under perturbed conditions), ``funnel``,
``funnel_spec`` and ``funnel_run`` (a finished search's best trees, seeds and hand trees
under a declared set of wider conditions; a tree reported only if it leads beyond noise),
``iterative`` (prune / fine-tune rounds), ``tiers`` (progressive block tiers), ``structured``
(ShortGPT, width, SlimGPT), ``lora`` (LoRA recovery of a saved pruned model), ``record``
(the ``--json`` record).
"""
