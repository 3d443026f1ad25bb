"""Mask fingerprints: on fixed probe tensors (``mask_fingerprint``, the search's dedup of trees
that ``canonical_key`` cannot prove equal), on the real features (below), and a small
byte-bounded cache of the masks last computed.

A candidate's fingerprint is a hash of the masks it gives on the REAL features of the model being
searched (every prunable linear, whole masks). Two trees with equal fingerprints zero exactly the
same weights, so the pruned models, and therefore their fitness on any windows, are identical:
a fingerprint hit can never hide a different tree. The masks computed for the fingerprint are
kept (bit-packed: 1/8 byte per weight) so that evaluating the candidate next does not recompute
its scores.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch

from gpsearch.errors import TreeError
from gpsearch.pruning.masks import Pattern, make_mask
from gpsearch.tree.canonical import canonical_key
from gpsearch.tree.interp import check_score, evaluate
from gpsearch.tree.node import Node, to_prefix
from gpsearch.tree.ops import EXTENDED, Registry
from gpsearch.tree.parse import parse_prefix
from gpsearch.tree.simplify import simplify


def pack(mask: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
    """bool tensor -> (bit-packed uint8 array, shape)."""
    return np.packbits(mask.detach().cpu().numpy().reshape(-1)), tuple(mask.shape)


def unpack(packed: np.ndarray, shape: tuple[int, ...], device=None) -> torch.Tensor:
    n = int(np.prod(shape))
    bits = np.unpackbits(packed, count=n).astype(bool)
    return (torch.from_numpy(bits).view(shape).to(device) if device
            else torch.from_numpy(bits).view(shape))


def digest(packed: dict[str, tuple[np.ndarray, tuple[int, ...]]]) -> str:
    """sha256 over every linear's name, shape and packed mask, in name order."""
    h = hashlib.sha256()
    for name in sorted(packed):
        bits, shape = packed[name]
        h.update(name.encode())
        h.update(repr(shape).encode())
        h.update(bits.tobytes())
    return h.hexdigest()[:32]


class MaskCache:
    """Least-recently-used {key: packed masks}, at most ``max_bytes`` of packed bits."""

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0

    @staticmethod
    def size(packed: dict) -> int:
        return sum(bits.nbytes for bits, _ in packed.values())

    def put(self, key, packed: dict) -> None:
        if key in self._items:
            self._bytes -= self.size(self._items.pop(key))
        n = self.size(packed)
        if n > self.max_bytes:
            return
        self._items[key] = packed
        self._bytes += n
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= self.size(old)

    def get(self, key):
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)


PROBE_SEEDS = (11, 23, 37)  # three fixed probe sets
PROBE_ROWS, PROBE_COLS = 48, 96


# ---- mask fingerprint ------------------------------------------------------------------------
def probe_terminals(seed: int, cols: int = PROBE_COLS, rows: int = PROBE_ROWS) -> dict:
    """Fixed, weight-like probe tensors (float32, like the evaluator's features):
    W = |N(0, 0.05)| with a few outliers [rows, cols]; X = lognormal per input channel with a few
    outlier channels [1, cols] (squared norms, hence large); G = 100 * |gradient-like| correlated
    with W and X [rows, cols]; S = sqrt(X); H = a positive inverse-Hessian-like diagonal [1, cols].
    """
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    w = torch.randn(rows, cols, generator=g, dtype=d).abs() * 0.05
    w = torch.where(torch.rand(rows, cols, generator=g, dtype=d) < 0.01, w * 8, w)
    x = torch.exp(torch.randn(1, cols, generator=g, dtype=d) * 1.2) * 20.0
    x = torch.where(torch.rand(1, cols, generator=g, dtype=d) < 0.03, x * 50, x)
    noise = torch.rand(rows, cols, generator=g, dtype=d) + 0.1
    grad = w * x.sqrt() * noise * 0.2
    h = 1.0 / (x + torch.rand(1, cols, generator=g, dtype=d) * 5 + 1.0)
    out = {"W": w, "X": x, "G": grad, "S": x.sqrt(), "H": h}
    return {k: v.float() for k, v in out.items()}


_PROBES: dict[int, list] = {}


@contextmanager
def _one_thread():
    """Probe tensors are tiny: with several threads, synchronisation costs up to 1000x the
    work on a busy machine (measured: tanh of 48x96 takes 40 ms with 2 threads, 16 us with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _probes(cols: int) -> list:
    if cols not in _PROBES:
        _PROBES[cols] = [probe_terminals(s, cols) for s in PROBE_SEEDS]
    return _PROBES[cols]


def mask_fingerprint(node: Node, sparsity: float, pattern: Pattern,
                     registry: Registry = EXTENDED) -> str:
    """Hash of the masks the tree makes on the fixed probe sets, or ``"invalid: <reason>"``
    when the tree cannot rank the probes (NaN/inf, a constant, a wrong shape, an error)."""
    cols = PROBE_COLS
    if pattern.kind == "nm" and cols % pattern.m:
        cols = pattern.m * -(-cols // pattern.m)
    digest = hashlib.sha1()
    try:
        with _one_thread():
            for terms in _probes(cols):
                score = evaluate(node, terms, registry)
                full = check_score(score, terms["W"].shape).contiguous()
                digest.update(make_mask(full, sparsity, pattern).numpy().tobytes())
    except TreeError as e:
        return f"invalid: {e}"
    except (RuntimeError, ValueError, ArithmeticError) as e:  # a numerical breakdown
        return f"invalid: {type(e).__name__}: {str(e)[:200]}"
    return digest.hexdigest()[:24]


class ExprServices:
    """What the search engine needs from the tree and mask code, on prefix expressions (it cannot
    import torch itself): OOS, the canonical key and the mask fingerprint at the search's sparsity
    and pattern (the pattern's scope decides whether rown may be stripped)."""

    def __init__(self, registry: Registry, sparsity: float, pattern: Pattern):
        self.registry, self.sparsity, self.pattern = registry, sparsity, pattern

    def _tree(self, expr: str) -> Node:
        return parse_prefix(expr, self.registry)

    def simplify(self, expr: str) -> str:
        return to_prefix(simplify(self._tree(expr), self.registry))

    def key(self, expr: str) -> str:
        return canonical_key(self._tree(expr), self.registry, self.pattern.scope)

    def fingerprint(self, expr: str) -> str:
        try:
            tree = self._tree(expr)
        except TreeError as e:
            return f"invalid: {e}"
        return mask_fingerprint(tree, self.sparsity, self.pattern, self.registry)
