"""How good a pruned model is: perplexity on windows, per-window NLL and KL to the dense model
(``windows``), staged budgets over those windows (``stages``, torch-free: the search engine
imports it), zero-shot accuracy through lm-eval (``zeroshot``). Imports ``model`` and below.

This ``__init__`` imports nothing, so that the torch-free engine can import ``stages``.
"""
