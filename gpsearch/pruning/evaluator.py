"""The evaluator: a model and its features kept resident; prune with a metric tree, measure
perplexity, restore the dense weights. Everything else (search, baselines, workers) uses it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch

from gpsearch.allocation.levels import per_block, ratio_of
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.fitness.perplexity import perplexity
from gpsearch.model.blocks import block_linears, prunable_linears
from gpsearch.model.blockwise import sequential_blocks
from gpsearch.model.data import eval_windows
from gpsearch.model.load import EMBEDDED, LoadedModel, load_model, set_threads
from gpsearch.model.offload import RestoreStore
from gpsearch.pruning.features import FeatureStore, kinds_for
from gpsearch.pruning.masks import Pattern, make_mask
from gpsearch.pruning.stats import attach_stats, remove_hooks
from gpsearch.tree import EXTENDED, Node, check_score, evaluate, terminals_used, to_prefix

MODES = ("dense", "sequential")


class Evaluator:
    """Prune a resident model with any metric tree and score it; ``restore()`` undoes the
    pruning."""

    def __init__(self, model: str = EMBEDDED, calib: CalibConfig | None = None,
                 dtype: str = "float32", device: str = "cpu", cache_dir: Path | None = None,
                 progress: bool = False, use_cache: bool = True, lm: LoadedModel | None = None,
                 device_map: str | None = None, offload: bool = False):
        set_threads()
        self.calib = calib or CalibConfig()
        self.lm = lm or load_model(model, dtype, device, device_map=device_map, offload=offload)
        self.model = self.lm.model
        self.progress = progress
        self.linears = prunable_linears(self.model)
        self.dense = RestoreStore(self.linears)  # host memory; dense[name] is on the layer's device
        self.features = FeatureStore(self.lm, self.calib, cache_dir, progress, use_cache)
        self._windows: dict[EvalConfig, torch.Tensor] = {}
        self.timings: dict[str, float] = {}
        self.rescale: dict[str, float] = {}  # terminal -> factor applied before a tree is scored
        self._stores = {self.calib: self.features}  # feature stores by calibration config

    # ---- evaluation conditions ----------------------------------------------------------------
    @contextmanager
    def condition(self, rescale: dict | None = None, calib: CalibConfig | None = None):
        """Score trees under another condition inside the block: terminals multiplied by
        ``rescale`` ({"W": 4.0, ...}; S = sqrt(X) follows a rescaled X) and/or the features of
        another calibration config (computed on this dense model on first use, then cached).
        Perplexities are unchanged by either: they only change which weights a tree zeroes."""
        saved = (self.rescale, self.calib, self.features)
        bad = set(rescale or {}) - {"W", "X", "G", "H", "S"}
        if bad:
            raise UserError(f"cannot rescale {', '.join(sorted(bad))}: terminals are W, X, G, H, S")
        if any(not (f > 0) for f in (rescale or {}).values()):
            raise UserError(f"rescaling factors must be positive (got {rescale})")
        try:
            self.rescale = dict(rescale or {})
            if calib is not None and calib != self.calib:
                if calib not in self._stores:
                    self._stores[calib] = FeatureStore(self.lm, calib, self.features.cache_dir,
                                                       self.progress, self.features.use_cache)
                self.calib, self.features = calib, self._stores[calib]
            yield self
        finally:
            self.rescale, self.calib, self.features = saved

    # ---- data ---------------------------------------------------------------------------------
    def windows(self, ev: EvalConfig) -> torch.Tensor:
        if ev not in self._windows:
            self._windows[ev] = eval_windows(self.lm.tokenizer, ev)
        return self._windows[ev]

    def perplexity(self, ev: EvalConfig, progress: bool | None = None) -> dict:
        p = self.progress if progress is None else progress
        out = perplexity(self.model, self.windows(ev), ev.batch_size, progress=p)
        out.update(split=ev.split, data=ev.data)
        return out

    # ---- scores -------------------------------------------------------------------------------
    def terminals(self, name: str, needed: set[str], local: dict | None = None) -> dict:
        """The terminal tensors of one linear. ``local`` overrides X/H (sequential mode)."""
        t = {}
        for term in needed:
            if term == "W":
                t["W"] = self.abs_weight(name)
            elif term in ("X", "S"):
                x = local["X"][name] if local else self.features.get("X")[name]
                t[term] = x if term == "X" else x.sqrt()
            elif term == "H":
                t["H"] = (local["H"][name] if local and "H" in local
                          else self.features.get("H")[name])
            elif term == "G":
                t["G"] = self.features.get("G")[name]
        if self.rescale:
            t = self._rescaled(t)
        dev = self.linears[name].weight.device  # --offload: the block is on the device now
        return {k: v if v.device == dev else v.to(dev) for k, v in t.items()}

    def _rescaled(self, t: dict) -> dict:
        """Terminals times their ``rescale`` factor (S = sqrt(X) gets sqrt of X's factor)."""
        f = dict(self.rescale)
        if "X" in f:
            f["S"] = f.get("S", 1.0) * f["X"] ** 0.5
        return {k: v * f[k] if f.get(k, 1.0) != 1.0 else v for k, v in t.items()}

    def abs_weight(self, name: str) -> torch.Tensor:
        """|dense weight| in float32, computed per layer when needed (a transient, not a cache:
        a cache would hold 4 more bytes per pruned parameter on the device). Read from the live
        weight while it is provably dense, else from the host copy."""
        return self.dense.current_if_dense(name).abs().float()

    def score(self, tree: Node, name: str, local: dict | None = None) -> torch.Tensor:
        needed = terminals_used(tree)
        raw = evaluate(tree, self.terminals(name, needed, local), EXTENDED)
        return check_score(raw, self.linears[name].weight.shape)

    def prepare(self, tree: Node) -> None:
        """Compute (or load) the features the tree needs, so later timings exclude them."""
        self.features.get_all(kinds_for(terminals_used(tree)))

    # ---- pruning ------------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, tree: Node, sparsity: float, pattern: Pattern, mode: str = "dense") -> dict:
        """Zero the lowest-scoring weights of every prunable linear, in place. Returns per-layer
        counts {name: (zeros, total)}."""
        if mode not in MODES:
            raise UserError(f"unknown feature mode {mode!r}; choose dense or sequential")
        t0 = time.perf_counter()
        if mode == "dense":
            self.prepare(tree)
            t1 = time.perf_counter()
            for name, lin in self.linears.items():
                lin.weight.masked_fill_(make_mask(self.score(tree, name), ratio_of(sparsity, name),
                                                   pattern), 0.0)
        else:
            t1 = t0
            self._prune_sequential(tree, sparsity, pattern)
        self.timings = {"features_s": t1 - t0, "prune_s": time.perf_counter() - t1}
        return self.layer_counts()

    @torch.no_grad()
    def compute_masks(self, tree: Node, sparsity: float, pattern: Pattern) -> dict:
        """{linear: bool mask of the weights to zero} (dense features), without pruning. The masks
        go to host memory layer by layer: the whole model's would be 1 byte per pruned parameter
        on the accelerator (a no-op on CPU)."""
        self.prepare(tree)
        return {name: make_mask(self.score(tree, name), ratio_of(sparsity, name), pattern).cpu()
                for name in self.linears}

    @torch.no_grad()
    def apply_masks(self, masks: dict) -> dict:
        """Zero the masked weights in place (masks from ``compute_masks``); per-layer counts."""
        t0 = time.perf_counter()
        for name, lin in self.linears.items():
            lin.weight.masked_fill_(masks[name].to(lin.weight.device), 0.0)
        self.timings = {"features_s": 0.0, "prune_s": time.perf_counter() - t0}
        return self.layer_counts()

    def _prune_sequential(self, tree: Node, sparsity: float, pattern: Pattern) -> None:
        needed = terminals_used(tree)
        if "G" in needed:
            self.features.get("G")  # gradients always come from the dense model
        want_stats = bool(needed & {"X", "S", "H"})

        def process(i, block, inputs):
            names = {f"{i}.{k}": v for k, v in block_linears(block).items()}
            local = None
            if want_stats:
                stats, handles = attach_stats(names, hessian="H" in needed,
                                              tokens_per_sample=self.calib.seqlen)
                try:
                    for inp in inputs:
                        inp.run(block)
                finally:
                    remove_hooks(handles)
                local = {"X": {n: s.x for n, s in stats.items()}}
                if "H" in needed:
                    local["H"] = {n: s.inverse_hessian_diag() for n, s in stats.items()}
            for name, lin in names.items():
                lin.weight.masked_fill_(make_mask(self.score(tree, name, local),
                                                   ratio_of(sparsity, name), pattern), 0.0)

        with torch.no_grad():
            sequential_blocks(self.model, self.features.samples(), self.calib.batch_size, process,
                              progress=self.progress, desc="prune blocks")

    @torch.no_grad()
    def restore(self) -> None:
        self.dense.restore()

    def layer_counts(self) -> dict[str, tuple[int, int]]:
        return {n: (int((lin.weight == 0).sum()), lin.weight.numel())
                for n, lin in self.linears.items()}

    def shapes(self) -> dict[str, tuple[int, int]]:
        return {n: tuple(lin.weight.shape) for n, lin in self.linears.items()}

    def pruned_modules(self) -> list[str]:
        """Names inside a block of the linears that are pruned (same in every block)."""
        return sorted({n.split(".", 1)[1] for n in self.linears})

    # ---- one evaluation -----------------------------------------------------------------------
    def evaluate(self, tree: Node, sparsity: float, pattern: Pattern, ev: EvalConfig,
                 mode: str = "dense", per_layer: bool = False, keep: bool = False) -> dict:
        """Prune, measure perplexity on ``ev``, restore (unless keep). Returns a full record."""
        try:
            counts = self.prune(tree, sparsity, pattern, mode)
            t0 = time.perf_counter()
            ppl = self.perplexity(ev)
            forward_s = time.perf_counter() - t0
        finally:
            if not keep:
                self.restore()
        return self.record(tree, sparsity, pattern, mode, counts, ppl, ev,
                           {**self.timings, "forward_s": forward_s}, per_layer)

    def record(self, tree: Node, sparsity: float, pattern: Pattern, mode: str, counts: dict,
               ppl: dict, ev: EvalConfig, timings: dict, per_layer: bool = False) -> dict:
        """The record of one pruned evaluation (``evaluate`` and the weight-update flows):
        tree, pattern, achieved sparsity (and the allocation when there is one), perplexity with
        its evaluation and calibration, timings."""
        zeros = sum(z for z, _ in counts.values())
        total = sum(t for _, t in counts.values())
        rec = {
            "model": self.lm.spec, "tree": to_prefix(tree), "sparsity": float(sparsity),
            "pattern": str(pattern), "scope": pattern.scope, "features": mode,
            "achieved_sparsity": zeros / total, "ppl": ppl["ppl"],
            "evaluation": {**ev.to_dict(), "windows": ppl["windows"], "tokens": ppl["tokens"]},
            "calibration": self.calib.to_dict(),
            "pruned_modules": self.pruned_modules(), "n_pruned_linears": len(counts),
            "timings": timings,
        }
        if hasattr(sparsity, "allocation"):
            rec["allocation"] = sparsity.allocation.to_dict()
            rec["block_sparsity"] = per_block(counts)
        if per_layer:
            rec["per_layer"] = {n: z / t for n, (z, t) in counts.items()}
        return rec

