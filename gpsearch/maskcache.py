"""Masks as exact fingerprints, and a small byte-bounded cache of the masks last computed.

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

import numpy as np
import torch


def pack(mask: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
    """bool tensor -> (bit-packed uint8 array, shape)."""
    return np.packbits(mask.detach().cpu().numpy().reshape(-1)), tuple(mask.shape)


def unpack(packed: np.ndarray, shape: tuple[int, ...], device=None) -> torch.Tensor:
    n = int(np.prod(shape))
    bits = np.unpackbits(packed, count=n).astype(bool)
    return torch.from_numpy(bits).view(shape).to(device) if device else torch.from_numpy(bits).view(shape)


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
