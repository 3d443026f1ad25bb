"""Keeping the accelerator for the model: the restore copy in host memory, and blocks moved onto
the device one at a time for models larger than it.

- ``RestoreStore``: the dense weights of the prunable linears, in HOST memory (pinned when the
  linear lives on an accelerator, so copies back are fast and asynchronous). ``store[name]`` is
  the dense weight on the linear's current device: the stored tensor itself for a CPU linear (no
  copy, as before), a per-layer transient copy for an accelerator one. ``restore`` copies every
  layer back; the values are copied bit for bit (same dtype, no arithmetic). ``current_if_dense``
  skips the copy when the live weight is provably untouched since it was stored or restored
  (same storage and same autograd version counter, which every in-place write bumps).
- ``BlockOffloader`` (``--offload``): the model stays in host memory except its embeddings, final
  norm and head, which live on the execution device; each decoder block is moved onto the device
  for its forward pass and back after it (forward hooks), and the layer-by-layer paths
  (``blockwise.sequential_blocks``: sequential features, Wanda, SparseGPT) keep one block on the
  device while they process it (``hold``), as SparseGPT's reference implementation does.
  Parameters are always real tensors (never ``meta``), so pruning in place works unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch
from torch import nn

from gpsearch.errors import UserError

OFFLOAD_ATTR = "_gpsearch_offloader"


class RestoreStore(Mapping):
    """Dense copies of ``linears``' weights in host memory, keyed like ``linears``."""

    def __init__(self, linears: dict[str, nn.Linear], pin: bool | None = None):
        self._linears = linears
        self._host: dict[str, torch.Tensor] = {}
        self._clean: dict[str, tuple[int, int]] = {}
        for name, lin in linears.items():
            w = lin.weight.detach()
            if w.device.type == "cpu":
                self._host[name] = w.clone()
                continue
            use_pin = torch.cuda.is_available() if pin is None else pin
            host = torch.empty(w.shape, dtype=w.dtype, device="cpu", pin_memory=use_pin)
            host.copy_(w)
            self._host[name] = host
        for name in linears:
            self._mark_clean(name)

    def _mark_clean(self, name: str) -> None:
        w = self._linears[name].weight
        self._clean[name] = (w.data_ptr(), w._version)

    def current_if_dense(self, name: str) -> torch.Tensor:
        """The dense weight on the linear's device: the live weight itself (no copy) when it has
        not been written since it was stored or restored, else ``self[name]``. For immediate,
        read-only use (it aliases the live weight, which a later prune modifies)."""
        w = self._linears[name].weight
        if self._clean.get(name) == (w.data_ptr(), w._version):
            return w.detach()
        return self[name]

    def host(self, name: str) -> torch.Tensor:
        """The stored (host) tensor itself."""
        return self._host[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        host, dev = self._host[name], self._linears[name].weight.device
        return host if host.device == dev else host.to(dev, non_blocking=host.is_pinned())

    def __iter__(self):
        return iter(self._host)

    def __len__(self) -> int:
        return len(self._host)

    @torch.no_grad()
    def restore(self, names=None) -> None:
        """Copy the dense weights back into the linears (all, or ``names``), layer by layer."""
        for name in (self._host if names is None else names):
            host = self._host[name]
            self._linears[name].weight.copy_(host, non_blocking=host.is_pinned())
            self._mark_clean(name)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._host.values())


def offloader(model: nn.Module) -> "BlockOffloader | None":
    return getattr(model, OFFLOAD_ATTR, None)


class BlockOffloader:
    """Blocks in host memory, moved onto ``device`` for their forward pass (see module doc)."""

    def __init__(self, model: nn.Module, device: torch.device | str):
        from gpsearch.model.blocks import decoder_blocks

        self.device = torch.device(device)
        self.blocks = decoder_blocks(model)
        self.home = torch.device("cpu")
        block_ids = {id(b) for b in self.blocks}
        self.moves = 0  # blocks moved onto the device (tests, benchmarks)
        self._held: set[int] = set()
        # everything outside the blocks (embeddings, rotary buffers, final norm, head) to device
        for module in _outside(model, block_ids):
            module.to(self.device)
        self._handles = []
        for i, block in enumerate(self.blocks):
            block.to(self.home)
            self._handles.append(block.register_forward_pre_hook(
                lambda m, args, kwargs, i=i: self._enter(i, args, kwargs), with_kwargs=True))
            self._handles.append(block.register_forward_hook(lambda m, a, o, i=i: self._leave(i)))
        setattr(model, OFFLOAD_ATTR, self)

    def _enter(self, i: int, args, kwargs):
        if i not in self._held:
            self.blocks[i].to(self.device)
            self.moves += 1
        return _to(args, self.device), _to(kwargs, self.device)

    def _leave(self, i: int) -> None:
        if i not in self._held:
            self.blocks[i].to(self.home)

    @contextmanager
    def hold(self, i: int):
        """Keep block ``i`` on the device for the whole body (stats, scoring, solving)."""
        self.blocks[i].to(self.device)
        self.moves += 1
        self._held.add(i)
        try:
            yield self.blocks[i]
        finally:
            self._held.discard(i)
            self.blocks[i].to(self.home)

    def remove(self, model: nn.Module) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if getattr(model, OFFLOAD_ATTR, None) is self:
            delattr(model, OFFLOAD_ATTR)


def _outside(model: nn.Module, block_ids: set[int]) -> list[nn.Module]:
    """The submodules of ``model`` that neither are blocks nor contain any."""
    out = []

    def walk(m: nn.Module) -> None:
        for child in m.children():
            if id(child) in block_ids:
                continue
            if any(id(d) in block_ids for d in child.modules()):
                walk(child)
            else:
                out.append(child)

    walk(model)
    return out


def _to(obj, device: torch.device):
    """Tensors inside args/kwargs (tuples, lists, dicts) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def check_real_weights(model: nn.Module) -> None:
    """A model whose weights were offloaded by accelerate (``meta`` parameters, from a
    ``device_map`` that put modules on cpu/disk) cannot be pruned in place: say what to do."""
    meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if meta:
        raise UserError(f"--device-map left {len(meta)} parameters offloaded (e.g. {meta[0]}): the "
                        "model does not fit the GPUs; pruning needs real weights in place: use "
                        "more GPUs, or --offload (blocks in host memory, moved to the device one "
                        "at a time)")
