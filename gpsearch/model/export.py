"""Save a pruned model in the compressed-tensors format (what vLLM and llm-compressor read) and
load such a directory back with that package.

Formats: ``sparse-bitmask`` for unstructured sparsity (the non-zero values plus one bit per
weight) and ``sparse-24-bitmask`` for 2:4 (two values and a 4-bit mask per group of four). Only
the pruned linears (those inside the decoder blocks) are compressed; everything else is stored
dense. The compression config goes into ``config.json`` under ``quantization_config``.

compressed-tensors dropped these two sparse compressors after 0.14 (0.15+ keep only their config
classes), and 0.14.0.1 declares ``transformers<5`` although its sparse compressors work with
transformers 5 (checked by the round-trip tests). So it is installed with ``--no-deps`` (see
``scripts/setup.sh``) and imported lazily: without it, ``--save-format compressed-tensors`` is a
one-line error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpsearch.errors import UserError
from gpsearch.io import write_json
from gpsearch.model.blocks import prunable_linears
from gpsearch.model.load import LoadedModel

SAVE_FORMATS = ("hf", "compressed-tensors")
CT_VERSION = "0.14.0.1"
INSTALL_HINT = (f"pip install --no-deps compressed-tensors=={CT_VERSION} (the last release with "
                "the sparse-bitmask and sparse-24-bitmask compressors)")


def check_save_format(fmt: str) -> str:
    if fmt not in SAVE_FORMATS:
        raise UserError(f"unknown --save-format {fmt!r}; choose {' or '.join(SAVE_FORMATS)}")
    if fmt == "compressed-tensors":
        _compressed_tensors()
    return fmt


def _compressed_tensors():
    try:
        import compressed_tensors
        from compressed_tensors.compressors import ModelCompressor
        from compressed_tensors.config import BitmaskConfig, Sparse24BitMaskConfig
    except ImportError:
        raise UserError(f"--save-format compressed-tensors needs the compressed-tensors package "
                        f"with its sparse compressors: {INSTALL_HINT}") from None
    try:
        from compressed_tensors.compressors import BaseCompressor

        BaseCompressor.get_value_from_registry("sparse-bitmask")
    except Exception:  # noqa: BLE001 - 0.15+: config classes without compressors
        raise UserError(f"compressed-tensors {compressed_tensors.__version__} has no sparse "
                        f"compressors: {INSTALL_HINT}") from None
    return ModelCompressor, BitmaskConfig, Sparse24BitMaskConfig


def sparsity_format(model) -> tuple[str, str, float]:
    """(format, structure, sparsity) of the pruned linears: 2:4 when every group of four
    consecutive weights along the input dimension holds at least two zeros, else unstructured."""
    zeros = total = 0
    two_four = True
    for lin in prunable_linears(model).values():
        w = lin.weight.detach()
        zeros += int((w == 0).sum())
        total += w.numel()
        if w.shape[1] % 4 or ((w.reshape(-1, 4) == 0).sum(1) < 2).any():
            two_four = False
    sparsity = zeros / total if total else 0.0
    if two_four and sparsity > 0:
        return "sparse-24-bitmask", "2:4", sparsity
    return "sparse-bitmask", "unstructured", sparsity


def save_compressed(lm: LoadedModel, out_dir: str | Path, record: dict) -> dict:
    """Write ``out_dir`` (safetensors in the compressed-tensors format, config with its
    compression config, tokenizer, ``gpsearch_record.json``); returns format and file sizes."""
    from safetensors.torch import save_file

    from gpsearch.model.save import check_save_dir

    ModelCompressor, BitmaskConfig, Sparse24BitMaskConfig = _compressed_tensors()
    check_save_dir(out_dir)
    out = Path(out_dir)
    fmt, structure, sparsity = sparsity_format(lm.model)
    pruned = {id(m) for m in prunable_linears(lm.model).values()}
    targets = [n for n, m in lm.model.named_modules() if id(m) in pruned]  # full module names
    kind = Sparse24BitMaskConfig if fmt == "sparse-24-bitmask" else BitmaskConfig
    compressor = ModelCompressor(sparsity_config=kind(global_sparsity=round(sparsity, 6),
                                                      sparsity_structure=structure,
                                                      targets=targets))
    state, seen = {}, set()
    for k, v in lm.model.state_dict().items():  # a tied lm_head is stored once (reloaded tied)
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        state[k] = v.detach().clone()
    compressed = compressor.compress(lm.model, state_dict=state)
    out.mkdir(parents=True, exist_ok=True)
    # written with safetensors directly: transformers' save_pretrained(state_dict=...) drops
    # keys it does not know (the bitmask's 1-D ``compressed``) and writes the dense weights
    save_file({k: v.contiguous() for k, v in compressed.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    lm.model.config.save_pretrained(out)
    if getattr(lm.model, "generation_config", None) is not None:
        lm.model.generation_config.save_pretrained(out)
    compressor.update_config(str(out))
    lm.tokenizer.save_pretrained(out)
    info = {"save_format": "compressed-tensors", "compression_format": fmt,
            "sparsity_structure": structure, "global_sparsity": sparsity,
            "compressed_modules": len(targets), "weights_bytes": weights_bytes(out)}
    write_json(out / "gpsearch_record.json", {**record, "export": info})
    return info


def weights_bytes(path: str | Path) -> int:
    """Total size of the safetensors files of a saved directory."""
    return sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))


def load_compressed(path: str | Path, dtype: torch.dtype | None = None):
    """A model built from ``path``'s config and filled by compressed-tensors' own decompressor
    (sparse weights decompressed, the other tensors as stored); returns the model (eval)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    ModelCompressor, _, _ = _compressed_tensors()
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # a skeleton first: the package fills it
    model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    compressor = ModelCompressor.from_pretrained(str(path))
    if compressor is None or compressor.sparsity_compressor is None:
        raise UserError(f"{path} holds no compressed-tensors sparsity config")
    compressor.decompress(str(path), model)  # every tensor: sparse ones decompressed
    model.tie_weights()
    return model.eval()
