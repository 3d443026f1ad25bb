"""Our own interpreter for metric trees (never eval/exec), and the checks on its result."""

from __future__ import annotations

import sympy
import torch

from ..errors import TreeError
from .node import Node
from .ops import EXTENDED, Registry

def evaluate(node: Node, terminals: dict[str, torch.Tensor], registry: Registry = EXTENDED,
             dtype: torch.dtype | None = None) -> torch.Tensor:
    """Value of the tree on the given terminal tensors (post-order, no recursion).

    dtype None: float32 first (fast), and float64 again when float32 overflows to inf/NaN
    (exp(min(x, 100)) alone exceeds float32's range), so the protected semantics hold exactly."""
    if dtype is None:
        out = _evaluate(node, terminals, registry, torch.float32)
        lo, hi = torch.aminmax(out) if out.numel() else (out, out)
        if out.numel() and bool(torch.isfinite(lo) & torch.isfinite(hi)):
            return out
        return _evaluate(node, terminals, registry, torch.float64)
    return _evaluate(node, terminals, registry, dtype)


def _evaluate(node: Node, terminals: dict, registry: Registry, dtype: torch.dtype) -> torch.Tensor:
    values: dict[int, torch.Tensor] = {}
    stack = [(node, False)]
    while stack:
        n, expanded = stack.pop()
        if not n.children:
            if n.name in registry.constants:
                values[id(n)] = torch.tensor(registry.constants[n.name], dtype=dtype)
            elif n.name in terminals:
                values[id(n)] = terminals[n.name].to(dtype)
            elif registry.is_leaf(n.name):
                raise TreeError(f"terminal {n.name!r} is not available here")
            else:
                raise TreeError(f"unknown terminal {n.name!r}")
        elif expanded:
            args = [values.pop(id(c)) for c in n.children]
            values[id(n)] = registry.op(n.name).torch_fn(*args)
        else:
            stack.append((n, True))
            stack.extend((c, False) for c in reversed(n.children))
    return values[id(node)]


def check_score(score: torch.Tensor, weight_shape) -> torch.Tensor:
    """The score broadcast to the weight's shape; TreeError if it cannot rank the weights."""
    shape = tuple(weight_shape)
    if score.dim() == 0:
        raise TreeError("metric is a constant: it does not depend on any weight")
    try:
        out = score.expand(shape) if tuple(score.shape) != shape else score
    except RuntimeError:
        raise TreeError(f"metric has shape {tuple(score.shape)}, cannot rank a {shape} weight") from None
    lo, hi = torch.aminmax(score)  # one pass; NaN propagates into both
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        raise TreeError("metric produced NaN/inf")
    if bool(lo == hi):
        raise TreeError("metric is constant over the whole matrix")
    return out


def sympy_expr(node: Node, registry: Registry = EXTENDED) -> sympy.Expr:
    """The tree as a sympy expression (terminals are positive real symbols)."""
    symbols = {name: sympy.Symbol(name, positive=True) for name in registry.terminals}
    values: dict[int, sympy.Expr] = {}
    stack = [(node, False)]
    while stack:
        n, expanded = stack.pop()
        if not n.children:
            values[id(n)] = sympy.Float(registry.constants[n.name]) if n.name in registry.constants \
                else symbols[n.name]
        elif expanded:
            op = registry.op(n.name)
            values[id(n)] = op.sympy_fn(*[values[id(c)] for c in n.children])
        else:
            stack.append((n, True))
            stack.extend((c, False) for c in n.children)
    return values[id(node)]
