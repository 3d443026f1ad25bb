"""Operators and registries with Pruner-Zero's exact (protected) semantics.

Unary: sqr, neg, abs, log(|x|+0.001), exp(min(x,100)), sqrt(|x|), tanh, pow (= x^2), skp (identity),
mms (min-max over the WHOLE tensor), zsn (z-score over the WHOLE tensor).
Binary: add, sub, mul, div(x, y) = x / ||y||_2 (Frobenius norm of y: a scalar).
Fixes of the original's faults: mms / zsn of a constant tensor give zeros (not NaN), div by a
zero-norm y divides by 1e-12 instead of 0.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

from ..errors import TreeError

EPS = 1e-12


@dataclass(frozen=True)
class Operator:
    name: str
    arity: int
    torch_fn: Callable
    sympy_fn: Callable | None = None
    doc: str = ""
    first_shape: bool = False  # output has the first argument's shape (div: y is reduced)


def _mms(x):
    lo, hi = x.min(), x.max()
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(x))


def _zsn(x):
    std = x.std(unbiased=False) if x.numel() > 1 else torch.zeros((), dtype=x.dtype)
    return torch.where(std > 0, (x - x.mean()) / torch.where(std > 0, std, torch.ones_like(std)),
                       torch.zeros_like(x))


def _div(x, y):
    return x / torch.linalg.vector_norm(y).clamp_min(EPS)


def _rown(x):
    return x / x.abs().sum(dim=-1, keepdim=True).clamp_min(EPS)


def _coln(x):
    return x / x.abs().sum(dim=0, keepdim=True).clamp_min(EPS)


def _pdiv(x, y):
    return x / (y.abs() + 1e-8)


F = sympy.Function
BASIC = [
    Operator("sqr", 1, lambda x: x * x, lambda a: a ** 2, "x * x"),
    Operator("neg", 1, lambda x: -x, lambda a: -a, "-x"),
    Operator("abs", 1, torch.abs, sympy.Abs, "|x|"),
    Operator("log", 1, lambda x: torch.log(x.abs() + 0.001), lambda a: sympy.log(sympy.Abs(a) + sympy.Rational(1, 1000)),
             "log(|x| + 0.001)"),
    Operator("exp", 1, lambda x: torch.exp(torch.clamp(x, max=100.0)), lambda a: sympy.exp(sympy.Min(a, 100)),
             "exp(min(x, 100))"),
    Operator("sqrt", 1, lambda x: torch.sqrt(x.abs()), lambda a: sympy.sqrt(sympy.Abs(a)), "sqrt(|x|)"),
    Operator("tanh", 1, torch.tanh, sympy.tanh, "tanh(x)"),
    Operator("pow", 1, lambda x: x * x, lambda a: a ** 2, "x^2 (same as sqr)"),
    Operator("skp", 1, lambda x: x, lambda a: a, "identity"),
    Operator("mms", 1, _mms, F("mms"), "(x - min) / (max - min) over the whole tensor; 0 if constant"),
    Operator("zsn", 1, _zsn, F("zsn"), "(x - mean) / std over the whole tensor; 0 if constant"),
    Operator("add", 2, torch.add, lambda a, b: a + b, "x + y"),
    Operator("sub", 2, torch.sub, lambda a, b: a - b, "x - y"),
    Operator("mul", 2, torch.mul, lambda a, b: a * b, "x * y"),
    Operator("div", 2, _div, F("div"), "x / ||y||_2 (Frobenius norm of y; 1e-12 if zero)",
             first_shape=True),
]
EXTRA = [
    Operator("pdiv", 2, _pdiv, lambda a, b: a / (sympy.Abs(b) + sympy.Rational(1, 10 ** 8)),
             "x / (|y| + 1e-8), elementwise"),
    Operator("rown", 1, _rown, F("rown"), "x / sum over its row (input dim) of |x|"),
    Operator("coln", 1, _coln, F("coln"), "x / sum over its column (output dim) of |x|"),
    Operator("qrt", 1, lambda x: x.abs().pow(0.25), lambda a: sympy.Abs(a) ** sympy.Rational(1, 4), "|x|^0.25"),
]
CONSTANTS = {"c0.5": 0.5, "c1": 1.0, "c2": 2.0, "c10": 10.0}


class Registry:
    """Operators and terminal names of one search space; every operator is checked on entry."""

    def __init__(self, name: str, terminals: tuple[str, ...], constants: dict | None = None):
        self.name = name
        self.terminals = tuple(terminals)
        self.constants = dict(constants or {})
        self._ops: dict[str, Operator] = {}

    def register(self, op: Operator) -> None:
        check_operator(op)
        self._ops[op.name] = op

    def op(self, name: str) -> Operator:
        if name not in self._ops:
            raise TreeError(f"unknown operator {name!r}")
        return self._ops[name]

    def is_op(self, name: str) -> bool:
        return name in self._ops

    def is_leaf(self, name: str) -> bool:
        return name in self.terminals or name in self.constants

    def names(self) -> tuple[str, ...]:
        return tuple(self._ops) + self.terminals + tuple(self.constants)

    def operators(self) -> tuple[Operator, ...]:
        return tuple(self._ops.values())


def check_operator(op: Operator) -> None:
    """gplearn-style admission: arity matches the function, output has the broadcast shape and is
    finite on zeros, negatives, very large values and a mix, incl. [1, n] x [m, n] broadcasting."""
    try:
        params = [p for p in inspect.signature(op.torch_fn).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) != op.arity:
            raise ValueError(f"operator {op.name}: arity {op.arity} but function takes {len(params)}")
    except (TypeError, ValueError) as e:
        if "arity" in str(e):
            raise
    g = torch.Generator().manual_seed(0)
    d = torch.float64  # trees are evaluated in float64 (exp(100) and 1e30^2 overflow float32)
    full = [torch.zeros(4, 6, dtype=d), -torch.rand(4, 6, generator=g, dtype=d) - 0.1,
            torch.full((4, 6), 1e30, dtype=d),
            torch.tensor([[0.0, 1e30, -1e30, 1.0, -1.0, 1e-30]] * 4, dtype=d)]
    row = [t[:1] for t in full]
    cases = [(a,) for a in full + row] if op.arity == 1 else \
        [(a, b) for a in full for b in full] + [(r, a) for r in row for a in full] + [(a, r) for r in row for a in full]
    for args in cases:
        out = op.torch_fn(*args)
        shape = args[0].shape if op.first_shape else torch.broadcast_shapes(*(a.shape for a in args))
        if tuple(out.shape) != tuple(shape):
            raise ValueError(f"operator {op.name}: output shape {tuple(out.shape)} != {tuple(shape)}")
        if not torch.isfinite(out).all():
            raise ValueError(f"operator {op.name}: non-finite output on a registration probe")


def _build(name, terminals, ops, constants=None) -> Registry:
    reg = Registry(name, terminals, constants)
    for op in ops:
        reg.register(op)
    return reg


PRUNERZERO = _build("prunerzero", ("W", "X", "G"), BASIC)
EXTENDED = _build("extended", ("W", "X", "G", "H", "S"), BASIC + EXTRA, CONSTANTS)
