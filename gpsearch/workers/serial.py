"""The serial backend: one resident Evaluator in this process scores candidates one by one.

- ``fingerprint_many(exprs)``: the hash of each candidate's whole masks on the real features
  ("invalid: why" for a tree that fails on them); the masks are kept for the evaluation that
  usually follows (``MaskCache``).
- ``proxy_many(exprs)``: the hurdle's cheap proxy of each candidate (``gpsearch.pruning.proxy``),
  from the masks ``fingerprint_many`` kept; None where the tree fails.
- ``evaluate_many(exprs, windows=None)``: prune, score the validation windows ``[a, b)`` (all
  when None), restore. ``extra["nll"]`` / ``extra["kl"]`` hold the per-window values, so a staged
  search can add windows later; ``fitness`` is the score over the windows scored in this call.
- ``allocation`` (an ``AllocationSpec`` as a dict: uniform, owl or a file): every linear is
  pruned at its allocated ratio; uniform and file allocations are resolved once, OWL's from each
  candidate's own scores (the allocation then is a function of the tree).
"""

from __future__ import annotations

import time
from pathlib import Path

from gpsearch.config import EvalConfig
from gpsearch.engine.result import EvalResult, fitness_of
from gpsearch.errors import TreeError
from gpsearch.pruning.masks import Pattern
from gpsearch.tree import parse_prefix

NUMERIC = (RuntimeError, ValueError, FloatingPointError)


class SerialBackend:
    """Prune with each expression, score on the validation windows, restore."""

    def __init__(self, evaluator, sparsity: float, pattern: Pattern, ev: EvalConfig,
                 mode: str = "dense", fitness: str = "ppl", topk: int = 512,
                 mask_cache_bytes: int = 512 << 20, rescale: dict | None = None,
                 feature_calib=None, allocation: dict | None = None):
        from gpsearch.pruning.fingerprint import MaskCache

        if fitness not in ("ppl", "kl"):
            raise ValueError(f"unknown fitness {fitness!r}")
        self.evaluator, self.sparsity, self.pattern, self.ev, self.mode = \
            evaluator, sparsity, pattern, ev, mode
        self.fitness, self.topk = fitness, topk
        self.masks = MaskCache(mask_cache_bytes)
        self._reference = None
        # an evaluation condition (multi-condition fitness): terminals rescaled before the tree
        # is evaluated, and/or the features of another calibration config (same resident model)
        self.rescale, self.feature_calib = dict(rescale or {}), feature_calib
        self._dense_nll = None
        self.allocation = _spec(allocation)
        self._fixed_allocation = None
        self._proxy = None  # the hurdle's OutputErrorProxy, built on first use

    def sparsity_for(self, tree):
        """The sparsity to prune ``tree`` at: the float, or an ``Allocated`` (see module doc)."""
        if self.allocation is None:
            return self.sparsity
        from gpsearch.allocation.apply import allocate

        if self.allocation.kind == "owl":
            with self.condition():
                return allocate(self.evaluator, self.allocation, self.sparsity, self.pattern, tree)
        if self._fixed_allocation is None:
            self._fixed_allocation = allocate(self.evaluator, self.allocation, self.sparsity,
                                              self.pattern)
        return self._fixed_allocation

    def condition(self):
        return self.evaluator.condition(self.rescale, self.feature_calib)

    def prepare(self, kinds) -> None:
        """Compute (or load) the feature kinds of this backend's calibration."""
        with self.condition():
            self.evaluator.features.get_all(kinds)

    def dense_nll(self) -> list[float]:
        """Per-window NLL of the DENSE model on every validation window (computed once)."""
        if self._dense_nll is None:
            from gpsearch.fitness.windows import window_scores

            ev = self.evaluator
            self._dense_nll = window_scores(ev.model, ev.windows(self.ev),
                                            self.ev.batch_size)["nll"]
        return self._dense_nll

    # ---- fingerprints -------------------------------------------------------------------------
    def fingerprint_one(self, expr: str) -> str | None:
        from gpsearch.pruning.fingerprint import digest, pack

        if self.mode != "dense":
            return None
        try:
            tree = parse_prefix(expr, _registry())
            sparsity = self.sparsity_for(tree)
            with self.condition():
                masks = self.evaluator.compute_masks(tree, sparsity, self.pattern)
        except TreeError as e:
            return f"invalid: {e}"
        except NUMERIC as e:
            return f"invalid: {type(e).__name__}: {e}"[:300]
        packed = {n: pack(m) for n, m in masks.items()}
        self.masks.put(expr, packed)
        return digest(packed)

    def fingerprint_many(self, exprs: list[str]) -> list[str | None]:
        return [self.fingerprint_one(e) for e in exprs]

    # ---- the hurdle's proxy -------------------------------------------------------------------
    def proxy_one(self, expr: str) -> float | None:
        """The output-error proxy of ``expr`` (``gpsearch.pruning.proxy``; lower is better), from
        its scores on the proxy's linears alone (the search asks before any fingerprint), or from
        the masks a fingerprint kept when one came first; None for a tree that fails on the
        features."""
        from gpsearch.allocation.levels import ratio_of
        from gpsearch.pruning.fingerprint import unpack
        from gpsearch.pruning.masks import make_mask
        from gpsearch.pruning.proxy import OutputErrorProxy

        if self._proxy is None:
            self._proxy = OutputErrorProxy(self.evaluator)
        proxy, ev = self._proxy, self.evaluator
        try:
            packed = self.masks.get(expr) if self.mode == "dense" else None
            if packed is not None:
                masks = {n: unpack(*packed[n]) for n in proxy.names}
            else:
                tree = parse_prefix(expr, _registry())
                sparsity = self.sparsity_for(tree)
                with self.condition():
                    ev.prepare(tree)
                    masks = {n: make_mask(ev.score(tree, n), ratio_of(sparsity, n), self.pattern)
                             for n in proxy.names}
            return proxy(masks)
        except (TreeError, *NUMERIC):
            return None

    def proxy_many(self, exprs: list[str]) -> list[float | None]:
        return [self.proxy_one(e) for e in exprs]

    # ---- evaluation ---------------------------------------------------------------------------
    def reference(self):
        """The dense model's top-K next-token reference on the validation windows (KL fitness);
        built on first use, while the model is dense, and cached on disk."""
        if self._reference is None:
            from gpsearch.fitness.windows import cached_reference
            from gpsearch.pruning.features import default_cache_dir

            ev = self.evaluator
            shared = ev.__dict__.setdefault("_fitness_references", {})  # backends of one model
            key = (self.ev, self.topk)
            if key not in shared:
                cache = ev.features.cache_dir if ev.features.cache_dir else default_cache_dir()
                shared[key] = cached_reference(
                    ev.model, ev.lm.identity, ev.windows(self.ev), self.ev.to_dict(), self.topk,
                    Path(cache), self.ev.batch_size, use_cache=ev.features.use_cache)
            self._reference = shared[key]
        return self._reference

    def evaluate_one(self, expr: str, windows: tuple[int, int] | None = None) -> EvalResult:
        from gpsearch.fitness.perplexity import perplexity_from_losses
        from gpsearch.fitness.windows import window_scores
        from gpsearch.pruning.fingerprint import unpack

        t0 = time.perf_counter()
        ev = self.evaluator
        all_windows = ev.windows(self.ev)
        a, b = windows if windows is not None else (0, all_windows.shape[0])
        ref = self.reference() if self.fitness == "kl" else None
        try:
            tree = parse_prefix(expr, _registry())
            packed = self.masks.get(expr) if self.mode == "dense" else None
            try:
                if packed is not None:
                    dev = next(iter(ev.linears.values())).weight.device
                    counts = ev.apply_masks({n: unpack(*packed[n], device=dev) for n in packed})
                else:
                    sparsity = self.sparsity_for(tree)
                    with self.condition():
                        counts = ev.prune(tree, sparsity, self.pattern, self.mode)
                prune_timings = dict(ev.timings)
                t1 = time.perf_counter()
                scores = window_scores(ev.model, all_windows[a:b], self.ev.batch_size, ref, a)
                forward_s = time.perf_counter() - t1
            finally:
                ev.restore()
        except TreeError as e:
            return EvalResult.failure(expr, str(e), time.perf_counter() - t0)
        except NUMERIC as e:  # numerical breakdowns
            return EvalResult.failure(expr, f"{type(e).__name__}: {e}"[:300],
                                      time.perf_counter() - t0)
        zeros = sum(z for z, _ in counts.values())
        total = sum(t for _, t in counts.values())
        ppl = perplexity_from_losses(_tensor(scores["nll"]), all_windows.shape[1])
        if self.fitness == "kl":
            from gpsearch.fitness.stages import score_of

            value = score_of("kl", scores["kl"])
        else:
            value = ppl
        return EvalResult(expr=expr, fitness=fitness_of(value), ppl=ppl,
                          seconds=time.perf_counter() - t0, achieved_sparsity=zeros / total,
                          extra={"timings": {**prune_timings, "forward_s": forward_s,
                                             "masks_cached": packed is not None},
                                 "windows": [a, b], **scores})

    def evaluate_many(self, exprs: list[str],
                      windows: tuple[int, int] | None = None) -> list[EvalResult]:
        return [self.evaluate_one(e, windows) for e in exprs]

    def close(self) -> None:
        pass


def _spec(d: dict | None):
    if not d:
        return None
    from gpsearch.allocation.apply import AllocationSpec

    return AllocationSpec.from_dict(d)


def _tensor(values):
    import torch

    return torch.tensor(values, dtype=torch.float64)


def _registry():
    from gpsearch.tree import EXTENDED

    return EXTENDED
