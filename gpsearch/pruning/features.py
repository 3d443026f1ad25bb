"""Features per prunable linear: W, X, G (and the extended H, S), computed once, cached on disk.

- ``W`` = |weight| of the DENSE model, fp32 [out, in] (taken from the evaluator's dense copy);
- ``X`` = Wanda's scaler_row [1, in] (see ``stats``), from the dense model ("dense" mode);
- ``G`` = 100 * sqrt(sum over calibration samples of (per-sample gradient of the LM loss w.r.t. the
  weight)^2), [out, in], computed once on the dense model, accumulated in float32 and stored in
  float32 for float32 models, in the model's dtype for bfloat16/float16 ones (2 bytes per
  parameter instead of 4 on the device; trees still compute in float32). Each sample's gradient
  is squared into one accumulator per linear as soon as it is produced (post-accumulate-grad
  hooks), and the gradient itself is freed at once: memory stays at about one extra copy of the
  linear weights;
- ``H`` = diag of the damped inverse Hessian [1, in]; ``S`` = sqrt(X) [1, in].
X and H are kept in host memory (one float32 per input channel: ~0.006 bytes per pruned
parameter) and moved to the linear's device when a tree reads them (``Evaluator.terminals``),
so the accelerator holds only the weights and G beside the model.
Cached as safetensors under the cache directory, keyed by model identity + calibration config.
``snapshots`` (smaller calibration sizes, e.g. the 32 samples of a robustness condition): when
a size's samples are the first n of this config's (same data, seqlen, seed: the seeded draw is
checked to be a prefix), its X and G are exactly the running statistics after n samples of this
pass, so they are saved to the cache on the way, under that size's own key, at no extra pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gpsearch.config import CalibConfig
from gpsearch.errors import UserError
from gpsearch.io import replacing
from gpsearch.model.blocks import base_model, model_device, prunable_linears
from gpsearch.model.data import calibration_samples
from gpsearch.model.load import LoadedModel
from gpsearch.model.offload import offloader
from gpsearch.pruning.stats import attach_stats, remove_hooks

FEATURE_VERSION = 1
# X and H only (G is unchanged, its cache stays valid): 2 = OPT's fc1 / fc2 inputs, which arrive
# as [batch * seqlen, in], count samples, not batches (stats.InputStats)
INPUT_STATS_VERSION = 2
COMPUTED = ("X", "G", "H")  # what is computed from data; W and S derive from the weight and X
_FROM = (("H", {"H"}), ("X", {"X", "S"}), ("G", {"G"}))  # kind -> the terminals that read it


def kinds_for(terminals) -> list[str]:
    """The computed feature kinds that these terminals read, H first (its pass yields X too)."""
    terms = set(terminals)
    return [kind for kind, uses in _FROM if terms & uses]


def default_cache_dir() -> Path:
    return Path(os.environ.get("GPSEARCH_CACHE", Path.home() / ".cache" / "gpsearch"))


@torch.no_grad()
def collect_input_stats(model, linears, samples: torch.Tensor, batch_size: int,
                        hessian: bool = False, progress: bool = False, on_batch=None) -> dict:
    """One dense forward pass over the calibration samples; returns {name: InputStats}.
    ``on_batch(n, stats)``: called after each batch, n = the samples seen so far."""
    stats, handles = attach_stats(linears, hessian, tokens_per_sample=samples.shape[1])
    runner, dev = base_model(model), model_device(model)
    try:
        for s in tqdm(range(0, samples.shape[0], batch_size), desc="features X",
                      disable=not progress, leave=False):
            runner(input_ids=samples[s:s + batch_size].to(dev), use_cache=False)
            if on_batch is not None:
                on_batch(min(s + batch_size, samples.shape[0]), stats)
    finally:
        remove_hooks(handles)
    return stats


def collect_gradients(model, linears, samples: torch.Tensor, progress: bool = False,
                      on_sample=None) -> dict:
    """G for every linear: per-sample gradients squared and summed in place, then 100*sqrt.
    ``on_sample(n, acc)``: called after each sample with the running sums of squares."""
    if offloader(model) is not None:
        raise UserError("G needs a backward pass through the whole model, which --offload does not "
                        "support: compute G once without --offload (the cache is reused), or use "
                        "a tree without G")
    was_training, grad_was = model.training, torch.is_grad_enabled()
    flags = {p: p.requires_grad for p in model.parameters()}
    acc = {n: torch.zeros_like(lin.weight, dtype=torch.float32) for n, lin in linears.items()}
    handles = []
    for p in model.parameters():
        p.requires_grad_(False)
    for name, lin in linears.items():
        lin.weight.requires_grad_(True)

        def hook(p, a=acc[name]):
            g = p.grad.float()
            a.addcmul_(g, g)
            p.grad = None

        handles.append(lin.weight.register_post_accumulate_grad_hook(hook))
    dev = model_device(model)
    try:
        model.eval()
        torch.set_grad_enabled(True)
        for i in tqdm(range(samples.shape[0]), desc="features G", disable=not progress,
                      leave=False):
            ids = samples[i:i + 1].to(dev)
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            if on_sample is not None:
                on_sample(i + 1, acc)
    finally:
        torch.set_grad_enabled(grad_was)
        remove_hooks(handles)
        for p, f in flags.items():
            p.requires_grad_(f)
            p.grad = None
        model.train(was_training)
    return g_from_sums(acc, linears, in_place=True)


def g_from_sums(acc: dict, linears, in_place: bool = False) -> dict:
    """G = 100 * sqrt(running sums of squared gradients), in G's storage dtype; ``in_place``
    reuses the sums' memory (the pass is over), else they are left as they are (a snapshot)."""
    return {n: (a.sqrt_() if in_place else a.sqrt()).mul_(100.0)
            .to(g_dtype(linears[n].weight.dtype))
            for n, a in acc.items()}


def x_and_h(stats: dict, hessian: bool) -> dict:
    """{"X": ..., and "H": ... when ``hessian``} in host memory from running input statistics."""
    out = {"X": {n: st.x.cpu() for n, st in stats.items()}}
    if hessian:
        out["H"] = {n: st.inverse_hessian_diag().cpu() for n, st in stats.items()}
    return out


def g_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype G is kept in: float32, or the model's own dtype when that is a 16-bit float."""
    return weight_dtype if weight_dtype in (torch.bfloat16, torch.float16) else torch.float32


class FeatureStore:
    """Lazily computes and caches the data-dependent features of one model + calibration config."""

    def __init__(self, lm: LoadedModel, calib: CalibConfig, cache_dir: Path | None = None,
                 progress: bool = False, use_cache: bool = True, snapshots: tuple = ()):
        self.lm, self.calib, self.progress, self.use_cache = lm, calib, progress, use_cache
        # smaller calibration sizes whose X / G are saved to the cache on the way (see _compute)
        self.snapshots = tuple(snapshots)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.linears = prunable_linears(lm.model)
        self._mem: dict[str, dict[str, torch.Tensor]] = {}
        self.computed: list[str] = []  # kinds computed (not loaded) in this process

    def key(self, kind: str) -> str:
        version = FEATURE_VERSION if kind == "G" else INPUT_STATS_VERSION
        blob = json.dumps({"model": self.lm.identity, "calib": self.calib.to_dict(), "kind": kind,
                           "version": version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def path(self, kind: str) -> Path:
        return self.cache_dir / "features" / f"{kind}-{self.key(kind)}.safetensors"

    def samples(self) -> torch.Tensor:
        return calibration_samples(self.lm.tokenizer, self.calib)

    def get(self, kind: str) -> dict[str, torch.Tensor]:
        """{linear name: tensor} for kind X, G or H (computed on first use, then cached)."""
        if kind not in COMPUTED:
            raise ValueError(f"unknown feature kind {kind}")
        if kind not in self._mem:
            path = self.path(kind)
            if self.use_cache and path.is_file():
                self._mem[kind] = self._placed(kind, load_file(str(path)))
            else:
                new = self._compute(kind)
                self._mem.update(new)
                self.computed = list(dict.fromkeys([*self.computed, kind, *new]))
                if self.use_cache:
                    for k in ({kind, "X", "H"} & set(self._mem)) if kind != "G" else {kind}:
                        self._save(k)
        return self._mem[kind]

    def get_all(self, kinds) -> None:
        """Load or compute several kinds; H first, since its pass yields X too (one pass)."""
        order = [k for k, _ in _FROM]
        for kind in sorted(set(kinds), key=lambda k: order.index(k) if k in order else len(order)):
            self.get(kind)

    def _placed(self, kind: str, tensors: dict) -> dict:
        """Loaded tensors where they live: G on its linear's device in its storage dtype (see
        g_dtype), X and H in host memory (see the module docstring)."""
        out = {}
        for n, t in tensors.items():
            w = self.linears[n].weight
            out[n] = t.to(w.device, g_dtype(w.dtype)) if kind == "G" else t.cpu()
        return out

    def _compute(self, kind: str) -> dict:
        model, samples = self.lm.model, self.samples()
        sizes = self._snapshot_sizes(samples, kind)
        if kind == "G":
            def grab_g(n, acc):
                if n in sizes:
                    self._save_snapshot("G", n, g_from_sums(acc, self.linears))
            return {"G": collect_gradients(model, self.linears, samples, self.progress,
                                           on_sample=grab_g if sizes else None)}

        def grab_x(n, stats):
            if n in sizes:
                for k, tensors in x_and_h(stats, kind == "H").items():
                    self._save_snapshot(k, n, tensors)
        stats = collect_input_stats(model, self.linears, samples, self.calib.batch_size,
                                    hessian=(kind == "H"), progress=self.progress,
                                    on_batch=grab_x if sizes else None)
        return x_and_h(stats, kind == "H")

    def _save(self, kind: str) -> None:
        self._write(self.path(kind), self._mem[kind], self.calib)

    def _write(self, path: Path, tensors: dict, calib: CalibConfig) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.detach().contiguous().cpu() for n, t in tensors.items()}
        with replacing(path) as tmp:
            save_file(tensors, str(tmp), metadata={"model": self.lm.identity,
                                                   "calib": json.dumps(calib.to_dict())})

    # ---- snapshots: the features of a smaller calibration size, on the way -----------------
    def _smaller(self, n: int) -> "FeatureStore":
        import dataclasses

        return FeatureStore(self.lm, dataclasses.replace(self.calib, nsamples=n), self.cache_dir)

    def _snapshot_sizes(self, samples: torch.Tensor, kind: str) -> set[int]:
        """The sizes n of ``snapshots`` whose features are exactly those after the first n
        samples of this pass: n's calibration samples ARE the first n of these (checked, not
        assumed), X's batches end at n, and n's cache file does not exist yet."""
        out = set()
        for n in self.snapshots:
            if not (self.use_cache and 0 < n < samples.shape[0]):
                continue
            if kind != "G" and n % self.calib.batch_size:
                continue
            small = self._smaller(n)
            kinds = ("X", "H") if kind == "H" else (kind,)
            if all(small.path(k).is_file() for k in kinds) or \
                    not torch.equal(small.samples(), samples[:n]):
                continue
            out.add(n)
        return out

    def _save_snapshot(self, kind: str, n: int, tensors: dict) -> None:
        small = self._smaller(n)
        if not small.path(kind).is_file():
            self._write(small.path(kind), tensors, small.calib)
