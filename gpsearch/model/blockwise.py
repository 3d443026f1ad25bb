"""Run a model block by block on calibration samples (Wanda/SparseGPT's sequential flow).

The inputs of the first decoder block are captured generically (every positional and keyword
argument: attention masks, position ids, rotary position embeddings...), so no per-family code is
needed and new transformers releases that add arguments keep working. Each block is then run on
those inputs; its outputs become the next block's inputs. With ``--offload`` (a
``BlockOffloader`` on the model) each block is on the device only while it is processed.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from gpsearch.model.blocks import decoder_blocks, model_device
from gpsearch.model.offload import offloader


class _Stop(Exception):
    pass


class BlockInput:
    """One batch's inputs to a block: the hidden states plus every other argument."""

    def __init__(self, hidden: torch.Tensor, args: tuple, kwargs: dict):
        self.hidden, self.args, self.kwargs = hidden, args, kwargs

    def run(self, block) -> torch.Tensor:
        out = block(self.hidden, *self.args, **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    def with_hidden(self, hidden: torch.Tensor) -> "BlockInput":
        return BlockInput(hidden, self.args, self.kwargs)


@torch.no_grad()
def capture_block_inputs(model, samples: torch.Tensor, batch_size: int) -> list[BlockInput]:
    """Run the model up to its first block for every batch of samples and keep what it received."""
    first = decoder_blocks(model)[0]
    captured: list[BlockInput] = []

    def hook(module, args, kwargs):
        kwargs = dict(kwargs)
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        captured.append(BlockInput(hidden.detach(), rest, kwargs))
        raise _Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    dev = model_device(model)
    try:
        with _held(model, 0):
            for s in range(0, samples.shape[0], batch_size):
                try:
                    model(input_ids=samples[s:s + batch_size].to(dev), use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    return captured


@torch.no_grad()
def run_block(block, inputs: list[BlockInput]) -> list[BlockInput]:
    return [inp.with_hidden(inp.run(block)) for inp in inputs]


def sequential_blocks(model, samples: torch.Tensor, batch_size: int,
                      process: Callable[[int, torch.nn.Module, list[BlockInput]], None],
                      progress: bool = False, desc: str = "blocks") -> None:
    """For each block in order: ``process(index, block, inputs)`` (which may run the block on the
    inputs with hooks to gather statistics, then prune it), then feed the block's outputs on
    those inputs (after processing, i.e. after pruning) to the next block."""
    inputs = capture_block_inputs(model, samples, batch_size)
    blocks = decoder_blocks(model)
    for i, block in enumerate(tqdm(blocks, desc=desc, disable=not progress, leave=False)):
        with _held(model, i):
            process(i, block, inputs)
            inputs = run_block(block, inputs)


def _held(model, i: int):
    """Block ``i`` kept on the device for the body under ``--offload``; else nothing."""
    off = offloader(model)
    return off.hold(i) if off is not None else nullcontext()


class _Stop(Exception):
    """Raised inside a block once every linear of interest has seen its input."""


@torch.no_grad()
def feed_block(block: nn.Module, inputs: list[BlockInput], linears: dict[str, nn.Linear],
               on_input: Callable[[int, str, torch.Tensor], None], stop_early: bool = True) -> None:
    """Run ``block`` on every batch of ``inputs``, calling ``on_input(batch, name, x)`` with the
    input of each linear as it is called. With ``stop_early``, a batch's forward is cut short
    right after the last of ``linears`` received its input (its own matmul is skipped)."""
    seen: set[str] = set()
    batch = [0]

    def make_hook(name):
        def hook(module, args):
            on_input(batch[0], name, args[0])
            seen.add(name)
            if stop_early and len(seen) == len(linears):
                raise _Stop
        return hook

    handles = [lin.register_forward_pre_hook(make_hook(n)) for n, lin in linears.items()]
    try:
        for b, inp in enumerate(inputs):
            batch[0] = b
            seen.clear()
            try:
                inp.run(block)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
