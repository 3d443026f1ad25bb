"""Pruning methods beyond "score with a tree, zero the lowest": the baselines of the literature
and every weight update, schedule and structure.

One-shot: ``magnitude``, ``wanda`` (+ ``wanda_variant``), ``sparsegpt`` (+ ``sparsegpt_math``,
``sparsegpt_metric``), ``recon`` (+ ``recon_math``: least-squares reconstruction). Schedules:
``iterative`` (prune, fine-tune, repeat; ``finetune``), ``tiers`` (+ ``tiers_math``,
``tiers_schedule``: progressive block tiers). Recovery: ``lora``. Structured: ``structured/``.
Recipes (``baselines/*.yaml``): ``recipes``. Imports ``pruning`` and below.
"""
