"""Fitness of a pruned model on validation windows: perplexity, or KL divergence to the dense model.

Both are computed per window (one forward pass gives both), so a staged search can score the
first windows of a candidate, and later add the next windows without repeating the first ones:
a stage's score is the mean over its windows of the per-window values.

- ``nll[w]`` = mean shifted-token negative log-likelihood of window w (as ``perplexity``);
  PPL over windows = exp(mean of nll[w]).
- ``kl[w]`` = mean over the window's predicted tokens of KL(p_dense || p_pruned) of the
  next-token distributions. The dense reference keeps, per token, the log-probabilities of its
  top-K tokens; the rest of the vocabulary is one "tail" bucket, so the KL is the exact KL of the
  two distributions coarsened to K + 1 outcomes (never above the full KL; equal to it when
  K >= vocabulary size). Memory of the reference: tokens x K x 8 bytes (float32 log-probs and
  int32 token ids): 16,384 tokens x K=512 = 64 MiB.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gpsearch.fitness.stages import score_of  # noqa: F401 - one definition, torch-free
from gpsearch.io import replacing
from gpsearch.model.blocks import model_device

DEFAULT_TOPK = 512
_TINY = 1e-12


@dataclass
class DenseReference:
    """The dense model's top-K next-token log-probabilities on windows [n, seqlen-1, K]."""

    logp: torch.Tensor  # float32 [n, seqlen-1, K]
    index: torch.Tensor  # int32 [n, seqlen-1, K]

    @property
    def windows(self) -> int:
        return int(self.logp.shape[0])

    def nbytes(self) -> int:
        return self.logp.numel() * 4 + self.index.numel() * 4


def topk_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., vocab] logits -> (float32 log-probs of the top-k tokens, their int32 ids)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    k = min(k, logp.shape[-1])
    vals, idx = logp.topk(k, dim=-1)
    return vals, idx.to(torch.int32)


def coarse_kl(ref_logp: torch.Tensor, ref_idx: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per token over the K reference tokens + one tail bucket.

    ref_logp, ref_idx: [..., K] (dense log-probs and ids); logits: [..., vocab] of the pruned
    model. Returns float64 [...]."""
    q_logp_all = torch.log_softmax(logits.float(), dim=-1)
    q_logp = q_logp_all.gather(-1, ref_idx.long())
    p = ref_logp.exp()
    head = (p * (ref_logp - q_logp)).sum(-1)
    p_tail = (1.0 - p.sum(-1)).clamp_min(0.0)
    q_tail = (1.0 - q_logp.exp().sum(-1)).clamp_min(0.0)
    tail = torch.where(p_tail > _TINY,
                       p_tail * (torch.log(p_tail.clamp_min(_TINY))
                                 - torch.log(q_tail.clamp_min(_TINY))),
                       torch.zeros_like(p_tail))
    return (head + tail).double()


@torch.no_grad()
def window_scores(model, windows: torch.Tensor, batch_size: int = 4,
                  reference: DenseReference | None = None, offset: int = 0,
                  progress: bool = False) -> dict:
    """Per-window mean NLL (and mean KL to ``reference`` when given) of ``windows`` [n, seqlen].

    ``offset``: index of ``windows[0]`` inside the reference's windows."""
    dev = model_device(model)
    nll, kl = [], []
    for s in tqdm(range(0, windows.shape[0], batch_size), desc="fitness", disable=not progress,
                  leave=False):
        ids = windows[s:s + batch_size].to(dev)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1, :]
        target = ids[:, 1:].to(logits.device)  # the last GPU under a --device-map
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                               reduction="none").view(ids.shape[0], -1)
        nll.append(loss.mean(dim=1).double().cpu())
        if reference is not None:
            a, b = offset + s, offset + s + ids.shape[0]
            ref_logp = reference.logp[a:b].to(logits.device)
            ref_idx = reference.index[a:b].to(logits.device)
            kl.append(coarse_kl(ref_logp, ref_idx, logits).mean(dim=1).cpu())
    out = {"nll": torch.cat(nll).tolist()}
    if reference is not None:
        out["kl"] = torch.cat(kl).tolist()
    return out


@torch.no_grad()
def dense_reference(model, windows: torch.Tensor, k: int = DEFAULT_TOPK, batch_size: int = 4,
                    progress: bool = False) -> DenseReference:
    """Top-K log-probabilities of the (dense) model on every window."""
    dev = model_device(model)
    vals, idxs = [], []
    for s in tqdm(range(0, windows.shape[0], batch_size), desc="dense reference",
                  disable=not progress, leave=False):
        logits = model(input_ids=windows[s:s + batch_size].to(dev), use_cache=False).logits
        v, i = topk_logprobs(logits[:, :-1, :], k)
        vals.append(v.cpu())
        idxs.append(i.cpu())
    return DenseReference(torch.cat(vals), torch.cat(idxs))


def reference_key(identity: str, ev: dict, k: int) -> str:
    blob = json.dumps({"model": identity, "evaluation": ev, "k": k, "version": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_reference(model, identity: str, windows: torch.Tensor, ev: dict, k: int,
                     cache_dir: Path, batch_size: int = 4, use_cache: bool = True,
                     progress: bool = False) -> DenseReference:
    """``dense_reference`` cached as safetensors under cache_dir/references/ (keyed by the model
    identity, the evaluation config and K). Call it while the model is dense."""
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / "references" / f"kl-{reference_key(identity, ev, k)}.safetensors"
    if use_cache and path.is_file():
        t = load_file(str(path))
        if t["logp"].shape[0] == windows.shape[0]:
            return DenseReference(t["logp"], t["index"])
    ref = dense_reference(model, windows, k, batch_size, progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            save_file({"logp": ref.logp.contiguous(), "index": ref.index.contiguous()}, str(tmp),
                      metadata={"model": identity, "evaluation": json.dumps(ev), "k": str(k)})
    return ref
