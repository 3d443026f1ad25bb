"""The model and its data: loading (a hub id, a local directory, a ``.gguf`` file or the embedded
SmolLM2), the decoder blocks and their prunable linears, block-by-block execution, offloading,
text specs and the calibration / validation / test splits, saving and export, memory accounting.

Modules: ``load`` (specs -> ``LoadedModel``), ``blocks`` (decoder blocks, prunable linears),
``blockwise`` (run blocks on captured inputs), ``offload`` (blocks in host memory), ``data``
(text specs, splits, windows), ``save`` / ``export`` (HF and compressed-tensors directories),
``memory`` (bytes per tensor kind). Imports ``tree`` and below only.
"""
