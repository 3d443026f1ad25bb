"""Memory accounting: the bytes the evaluator holds per pruned parameter, by kind and by place,
measured on a live Evaluator (tensor accounting) and extrapolated to larger LLaMA shapes.

Places: ``accelerator`` = on the model's device (the GPU in a GPU run; on a CPU run the same RAM
as the host, but the role is the same), ``host`` = host memory by design (the restore copy).
Kinds: model weights (the pruned linears), restore copy, |W| (0: computed per layer when a tree
reads W), features G / X / H as stored, the dense reference of a KL fitness (accounted, not held:
top-K logits + indices per validation token, K x (4 + 4) bytes each), and the peak transient
while scoring and masking (measured with the CPU profiler's allocator events).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

KL_TOPK = 512
KL_BYTES_PER_ENTRY = 4 + 4  # float32 logit + int32 index


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def accounting(evaluator, n_tokens: int = 0, kl_topk: int = KL_TOPK) -> dict:
    """Bytes held by ``evaluator`` per kind and place (features only if already loaded)."""
    lins = evaluator.linears
    params = sum(lin.weight.numel() for lin in lins.values())
    rows = {
        "model_weights": (sum(nbytes(lin.weight) for lin in lins.values()), "accelerator"),
        "restore_copy": (evaluator.dense.nbytes(), "host"),
        "abs_w": (0, "accelerator"),  # computed per layer on the fly: part of the transient
    }
    mem = evaluator.features._mem
    for kind, place in (("G", "accelerator"), ("X", "host"), ("H", "host")):
        rows[kind] = (sum(nbytes(t) for t in mem.get(kind, {}).values()), place)
    out = {k: {"bytes": b, "place": p, "per_param": b / params, "held": True}
           for k, (b, p) in rows.items()}
    kl = n_tokens * kl_topk * KL_BYTES_PER_ENTRY  # not held by the evaluator (yet): accounted
    out["kl_reference"] = {"bytes": kl, "place": "accelerator", "per_param": kl / params,
                           "held": False, "tokens": n_tokens, "topk": kl_topk}
    per_place: dict[str, int] = {}
    for row in out.values():
        if row["held"]:
            per_place[row["place"]] = per_place.get(row["place"], 0) + row["bytes"]
    places = {p: {"bytes": b, "per_param": b / params} for p, b in per_place.items()}
    acc = places.get("accelerator", {"bytes": 0})["bytes"] + kl
    return {"pruned_params": params, "kinds": out, "per_place": places,
            "accelerator_with_kl_reference": {"bytes": acc, "per_param": acc / params}}


def before_layout(acc: dict, weight_bytes_per_param: float) -> dict:
    """What the layout before this change held on the accelerator, from the same tensors: the
    restore copy there too, a float32 |W| cache, G in float32."""
    k = acc["kinds"]
    params = acc["pruned_params"]
    g_fp32 = 4.0 * params if k["G"]["bytes"] else 0.0
    total = (k["model_weights"]["bytes"] + k["restore_copy"]["bytes"] + 4.0 * params + g_fp32
             + k["X"]["bytes"] + k["H"]["bytes"])
    return {"accelerator_bytes": total, "per_param": total / params,
            "weight_bytes_per_param": weight_bytes_per_param}


def peak_transient(fn) -> tuple[int, float]:
    """Peak bytes allocated (and not yet freed) while ``fn()`` runs on CPU, from the profiler's
    allocator events (allocations attributed to the op that made them, frees as they happen).
    Returns (peak bytes, seconds, including the profiler's overhead)."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    seconds = time.perf_counter() - t0
    items = []
    for e in prof.events():
        m = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if m:
            items.append((e.time_range.start, m))
    items.sort()
    cur = peak = 0
    for _, m in items:
        cur += m
        peak = max(peak, cur)
    return peak, seconds


# ---- extrapolation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """The shapes that set the memory of a LLaMA-style decoder."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def block_params(self) -> int:
        h, i = self.hidden, self.intermediate
        return 2 * h * h + 2 * h * self.kv_dim + 3 * h * i

    def pruned_params(self) -> int:
        return self.layers * self.block_params()

    def other_params(self) -> int:
        """Embeddings (+ untied head) + norms."""
        return (self.vocab * self.hidden * (1 if self.tied else 2)
                + (2 * self.layers + 1) * self.hidden)

    def largest_linear(self) -> int:
        return self.hidden * self.intermediate

    def hessian_bytes(self) -> int:
        """SparseGPT: one float32 Hessian per distinct block input (q/k/v share, gate/up share):
        attention in, o_proj in, MLP in (hidden^2 each) and down_proj in (intermediate^2)."""
        return 4 * (3 * self.hidden ** 2 + self.intermediate ** 2)


SHAPES = {
    "llama-2-7b": Shape("llama-2-7b", 4096, 11008, 32, 32, 32, 32000),
    "llama-2-13b": Shape("llama-2-13b", 5120, 13824, 40, 40, 40, 32000),
    "llama-2-70b": Shape("llama-2-70b", 8192, 28672, 80, 64, 8, 32000),
}


def shape_of(config) -> Shape:
    """A Shape from a transformers LLaMA-style config (the embedded model, tests)."""
    c = config
    return Shape(getattr(c, "name_or_path", "") or c.model_type, c.hidden_size,
                 c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                 getattr(c, "num_key_value_heads", c.num_attention_heads), c.vocab_size,
                 bool(getattr(c, "tie_word_embeddings", False)))


def forward_bytes(shape: Shape, batch: int, seqlen: int, wbytes: int) -> int:
    """A rough working set of one no-grad forward pass of ``batch`` x ``seqlen`` tokens with
    gpsearch's perplexity: logits in the model's dtype + their float32 copy + the float32
    log-softmax (10 bytes per vocab entry for a 16-bit model), plus one block's activations
    (residual, q/k/v/o, MLP intermediates) in the model's dtype; SDPA keeps no seqlen^2 scores."""
    tokens = batch * seqlen
    logits = tokens * shape.vocab * (wbytes + 4 + 4)
    block = tokens * (6 * shape.hidden + 3 * shape.intermediate) * wbytes
    return logits + block


def needs(shape: Shape, wbytes: int, g_bytes: int, per_param_transient: float,
          eval_tokens: int = 2048, batch: int = 4, seqlen: int = 256,
          calib: int = 128, calib_seqlen: int = 2048) -> dict:
    """Accelerator bytes for prune / search / SparseGPT on ``shape`` (see docs/memory.md).

    wbytes: bytes per weight (2 for bf16); g_bytes: bytes per G entry (as stored);
    per_param_transient: the measured peak transient of scoring + masking per parameter of the
    LARGEST linear (scoring runs one linear at a time)."""
    p, other = shape.pruned_params(), shape.other_params()
    weights = (p + other) * wbytes
    transient = int(per_param_transient * shape.largest_linear())
    fwd = forward_bytes(shape, batch, seqlen, wbytes)
    x_bytes = shape.layers * 4 * (6 * shape.hidden + shape.intermediate)  # X: [1, in] float32
    kl = eval_tokens * KL_TOPK * KL_BYTES_PER_ENTRY
    # X lives in host memory; one linear's X is on the device while it is scored (in the transient)
    prune_no_g = weights + transient + fwd  # trees over W, X only (Wanda, RIA...)
    prune = prune_no_g + p * g_bytes
    search = prune + kl
    # the layout before: restore copy beside the model, float32 |W| cache, float32 G
    before = weights + p * wbytes + p * 4 + p * 4 + x_bytes + transient + fwd
    # SparseGPT with --offload: one block + its Hessians + the calibration activations
    # (inputs and outputs of a block, calib x calib_seqlen tokens) + embeddings/head + a
    # float32 working copy of the largest linear (the solver runs in float32).
    acts = 2 * calib * calib_seqlen * shape.hidden * wbytes
    sgpt_off = (shape.block_params() * wbytes + shape.hessian_bytes() + acts
                + other * wbytes + 3 * 4 * shape.largest_linear())
    sgpt_res = weights + shape.hessian_bytes() + acts + 3 * 4 * shape.largest_linear()
    return {"pruned_params": p, "weights": weights, "prune": prune, "prune_no_g": prune_no_g,
            "search": search, "search_no_g": prune_no_g + kl, "search_before": before + kl,
            "sparsegpt_offload": sgpt_off, "sparsegpt_resident": sgpt_res,
            "host_restore_copy": p * wbytes, "host_x": x_bytes, "forward": fwd,
            "transient": transient,
            "g_compute_accumulators": p * 4}
