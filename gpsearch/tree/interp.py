"""Our own interpreter for metric trees (never eval/exec), the checks on its result, and the map
of a tree to sympy."""

from __future__ import annotations

from typing import Callable, Mapping

import sympy
import torch

from gpsearch.errors import TreeError
from gpsearch.tree.node import Node
from gpsearch.tree.ops import PRUNERZERO, Registry
from gpsearch.tree.parse import validate


def _postorder(node: Node, leaf: Callable, apply: Callable):
    """Fold the tree bottom-up with an explicit stack: leaf(name) for leaves, apply(name, args)
    for operators. A value stack (not a dict keyed by node) so a shared subtree is fine."""
    values: list = []
    stack: list = [(node, False)]
    while stack:
        n, expanded = stack.pop()
        if not n.children:
            values.append(leaf(n.name))
        elif expanded:
            k = len(n.children)
            args = values[-k:]
            del values[-k:]
            values.append(apply(n.name, args))
        else:
            stack.append((n, True))
            stack.extend((c, False) for c in reversed(n.children))
    return values[0]


def _device(node: Node, terminals: Mapping) -> torch.device:
    for n in node.walk():
        t = terminals.get(n.name) if not n.children else None
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


def _run(node: Node, terminals: Mapping, registry: Registry, dtype: torch.dtype) -> torch.Tensor:
    device = _device(node, terminals)

    def leaf(name):
        if name in registry.constants:
            return torch.tensor(registry.constants[name], dtype=dtype, device=device)
        if name not in terminals:
            raise TreeError(f"terminal {name!r} is not available here (given: "
                            f"{', '.join(sorted(map(str, terminals))) or 'none'})")
        value = terminals[name]
        if not isinstance(value, torch.Tensor):
            raise TreeError(f"terminal {name!r} must be a tensor, not {type(value).__name__}")
        return value.to(dtype)

    def apply(name, args):
        return registry.op(name).torch_fn(*args)

    return _postorder(node, leaf, apply)


def _all_finite(t: torch.Tensor) -> bool:
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)  # one pass; NaN propagates into both
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def evaluate(node: Node, terminals: dict[str, torch.Tensor], registry: Registry = PRUNERZERO,
             dtype: torch.dtype | None = None) -> torch.Tensor:
    """Value of the (validated) tree on the caller's terminal tensors; constants come from the
    registry. dtype None: float32, computed again in float64 only when the float32 result is not
    finite (exp(min(x, 100)) alone exceeds float32), so the protected semantics hold. Whether
    the final result is finite is the caller's check (``check_score``). The arguments are never
    modified (every registered operator is checked for that)."""
    validate(node, registry)
    if not isinstance(terminals, Mapping):
        raise TreeError(f"terminals must be a dict of tensors, not {type(terminals).__name__}")
    if dtype is not None:
        return _run(node, terminals, registry, dtype)
    out = _run(node, terminals, registry, torch.float32)
    if _all_finite(out):
        return out
    return _run(node, terminals, registry, torch.float64)


def check_score(score: torch.Tensor, weight_shape) -> torch.Tensor:
    """The score broadcast to ``weight_shape`` (a view where it is expanded); TreeError if it
    cannot rank the weights: a scalar, a shape that does not broadcast to the weight, any NaN or
    inf, or one value over the whole matrix."""
    if not isinstance(score, torch.Tensor):
        raise TreeError(f"metric must be a tensor, not {type(score).__name__}")
    shape = tuple(int(s) for s in weight_shape)
    if score.dim() == 0:
        raise TreeError("metric does not depend on any weight or input (it is a scalar): "
                        "metric is constant")
    try:
        target = tuple(torch.broadcast_shapes(tuple(score.shape), shape))
    except RuntimeError:
        target = None
    if target != shape:
        raise TreeError(f"metric has the wrong shape {tuple(score.shape)} for a {shape} weight")
    if score.numel() == 0:
        raise TreeError("metric is empty")
    out = score.expand(shape) if tuple(score.shape) != shape else score
    lo, hi = torch.aminmax(score)  # one pass; NaN propagates into both
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        raise TreeError("metric produced NaN/inf")
    if bool(lo == hi):
        raise TreeError("metric is constant over the whole matrix")
    return out


def sympy_expr(node: Node, registry: Registry = PRUNERZERO) -> sympy.Expr:
    """The tree as a sympy expression: inputs are positive real symbols, constants exact
    rationals, operators their ``sympy_fn`` (an opaque sympy Function named after the operator
    where there is no closed form: mms, zsn, div, rown, coln)."""
    validate(node, registry)

    def leaf(name):
        if name in registry.constants:
            return sympy.Rational(repr(registry.constants[name]))
        return sympy.Symbol(name, positive=True)

    def apply(name, args):
        return registry.op(name).sympy_fn(*args)

    return _postorder(node, leaf, apply)
