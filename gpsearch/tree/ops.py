"""Operators and registries.

PRUNERZERO has Pruner-Zero's operators with their published semantics, except for three faults of
the original that are fixed here (each written in the operator's doc):
- mms of a constant tensor gives zeros (the original divides 0 by 0: NaN);
- zsn of a constant tensor (or of one element) gives zeros (the original: NaN);
- div(x, y) = x / max(||y||_2, 1e-12): a zero-norm y divides by 1e-12 instead of 0.
EXTENDED adds the terminals H and S, a few constants, pdiv, rown, coln and qrt (enough for RIA).

Every operator passes ``check_operator`` when it is registered, so a faulty one cannot enter a
registry. Trees are evaluated in float32 with a float64 retry when float32 overflows (see
``interp.evaluate``): the probes therefore run in float64, where exp(min(x, 100)) is finite.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

from gpsearch.errors import TreeError

NORM_FLOOR = 1e-12  # smallest divisor of div, rown and coln
PDIV_EPS = 1e-8  # pdiv(x, y) = x / (|y| + PDIV_EPS)


@dataclass(frozen=True)
class Operator:
    """An operator of the trees: elementwise with broadcasting, whole-tensor where its doc says."""

    name: str
    arity: int
    torch_fn: Callable
    sympy_fn: Callable | None = None  # None: an opaque sympy Function named after the operator
    doc: str = ""

    def __post_init__(self):
        if self.sympy_fn is None and isinstance(self.name, str) and self.name.isidentifier():
            object.__setattr__(self, "sympy_fn", sympy.Function(self.name))


# ---- the operator functions (pure: they never modify their arguments) ------------------------
def _sqr(x):
    return x * x


def _neg(x):
    return -x


def _abs(x):
    return x.abs()


def _log(x):
    return torch.log(x.abs() + 0.001)


def _exp(x):
    return torch.exp(x.clamp(max=100.0))


def _sqrt(x):
    return x.abs().sqrt()


def _tanh(x):
    return torch.tanh(x)


def _skp(x):
    return x


def _safe(divisor):
    """The divisor with zeros replaced by ones (used where the numerator is zero anyway)."""
    return torch.where(divisor == 0, torch.ones_like(divisor), divisor)


def _mms(x):
    lo, hi = torch.aminmax(x)
    return (x - lo) / _safe(hi - lo)  # constant x: x - lo is 0 everywhere


def _zsn(x):
    if x.numel() < 2:
        return torch.zeros_like(x)
    std = x.std()  # unbiased, as torch.Tensor.std() in the original
    return (x - x.mean()) / _safe(std)  # constant x: x - mean is 0 everywhere


def _add(x, y):
    return x + y


def _sub(x, y):
    return x - y


def _mul(x, y):
    return x * y


def _div(x, y):
    x = torch.broadcast_tensors(x, y)[0]  # a view: the result has the broadcast shape
    return x / torch.linalg.vector_norm(y).clamp_min(NORM_FLOOR)


def _pdiv(x, y):
    return x / (y.abs() + PDIV_EPS)


def _rown(x):
    return x / x.abs().sum(dim=-1, keepdim=True).clamp_min(NORM_FLOOR)


def _coln(x):
    if x.dim() < 2:  # a constant or a vector is its own single row: one element per column
        return x / x.abs().clamp_min(NORM_FLOOR)
    return x / x.abs().sum(dim=-2, keepdim=True).clamp_min(NORM_FLOOR)


def _qrt(x):
    return x.abs().pow(0.25)


POWR_MAX = 4.0  # powr clamps its exponent to [-4, 4]


def _powr(x, y):
    c = y.clamp(-POWR_MAX, POWR_MAX)
    return torch.exp((c * torch.log(x.abs() + NORM_FLOOR)).clamp(-80.0, 80.0))


def _sigm(x):
    return torch.sigmoid(x)


def _mnn(x):
    return x / x.abs().mean().clamp_min(NORM_FLOOR)


def _rcn(x):
    a = x.abs()
    if x.dim() == 0:
        return x / (2 * a).clamp_min(NORM_FLOOR)
    rows = a.sum(dim=-1, keepdim=True)
    cols = a.sum(dim=-2, keepdim=True) if x.dim() >= 2 else a
    return x / (rows + cols).clamp_min(NORM_FLOOR)


_THOUSANDTH = sympy.Rational(1, 1000)

BASIC = (
    Operator("sqr", 1, _sqr, lambda a: a ** 2, "x * x"),
    Operator("neg", 1, _neg, lambda a: -a, "-x"),
    Operator("abs", 1, _abs, sympy.Abs, "|x|"),
    Operator("log", 1, _log, lambda a: sympy.log(sympy.Abs(a) + _THOUSANDTH), "log(|x| + 0.001)"),
    Operator("exp", 1, _exp, lambda a: sympy.exp(sympy.Min(a, 100)), "exp(min(x, 100))"),
    Operator("sqrt", 1, _sqrt, lambda a: sympy.sqrt(sympy.Abs(a)), "sqrt(|x|)"),
    Operator("tanh", 1, _tanh, sympy.tanh, "tanh(x)"),
    Operator("pow", 1, _sqr, lambda a: a ** 2, "x^2 (the same as sqr, as in Pruner-Zero)"),
    Operator("skp", 1, _skp, lambda a: a, "x (identity)"),
    Operator("mms", 1, _mms, None,
             "(x - min) / (max - min) over the whole tensor; zeros if x is constant (fix: NaN)"),
    Operator("zsn", 1, _zsn, None,
             "(x - mean) / std over the whole tensor (unbiased std); zeros if x is constant or "
             "has one element (fix: NaN)"),
    Operator("add", 2, _add, lambda a, b: a + b, "x + y"),
    Operator("sub", 2, _sub, lambda a, b: a - b, "x - y"),
    Operator("mul", 2, _mul, lambda a, b: a * b, "x * y"),
    Operator("div", 2, _div, None,
             "x / max(||y||_2, 1e-12): divided by the Frobenius norm of the whole of y (a scalar), "
             "a zero y divides by 1e-12 (fix: inf/NaN); result has the broadcast shape of x and y"),
)
EXTRA = (
    Operator("pdiv", 2, _pdiv, lambda a, b: a / (sympy.Abs(b) + sympy.Rational(1, 10 ** 8)),
             "x / (|y| + 1e-8), elementwise; the sign of y is dropped (all terminals are >= 0), "
             "so the operator is continuous at y = 0"),
    Operator("rown", 1, _rown, None,
             "x / max(sum over its row (the input dim, dim=1) of |x|, 1e-12)"),
    Operator("coln", 1, _coln, None,
             "x / max(sum over its column (the output dim, dim=0) of |x|, 1e-12)"),
    Operator("qrt", 1, _qrt, lambda a: sympy.Abs(a) ** sympy.Rational(1, 4), "|x|^0.25"),
    Operator("powr", 2, _powr, None,
             "(|x| + 1e-12)^clamp(y, -4, 4), the log clamped to [-80, 80] (X to a tunable power: "
             "powr(X, c0.25))"),
    Operator("sigm", 1, _sigm, lambda a: 1 / (1 + sympy.exp(-a)), "sigmoid(x)"),
    Operator("mnn", 1, _mnn, None, "x / max(mean over the whole tensor of |x|, 1e-12)"),
    Operator("rcn", 1, _rcn, None,
             "x / max(row sum of |x| + column sum of |x|, 1e-12) (OptiShear's 1/(row+column))"),
)
CONSTANTS = {"c0.5": 0.5, "c1": 1.0, "c2": 2.0, "c10": 10.0}
_NUMERIC = re.compile(r"^c(-?(?:0|[1-9][0-9]{0,3})(?:\.[0-9]{1,6})?)$")


class ConstantTable(dict):
    """The named constants, plus (``numeric=True``) any constant written ``c<number>`` with at
    most 4 integer and 6 decimal digits (``c0.37``, ``c-2``): what constant tuning writes."""

    def __init__(self, named: dict, numeric: bool = False):
        super().__init__(named)
        self.numeric = numeric

    def _value(self, name):
        m = _NUMERIC.match(name) if self.numeric and isinstance(name, str) else None
        return float(m.group(1)) if m else None

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, name) or self._value(name) is not None

    def __getitem__(self, name):
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        v = self._value(name)
        if v is None:
            raise KeyError(name)
        return v

    def get(self, name, default=None):
        return self[name] if name in self else default


def constant_name(value: float) -> str:
    """The leaf name of a numeric constant (6 decimals at most, no trailing zeros)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "c" + ("0" if text in ("", "-0") else text)


class Registry:
    """Operators, input terminals and constants of one search space.

    ``terminals`` lists every leaf name: the inputs (supplied by the caller of ``evaluate``) and
    then the constants (scalar values the registry supplies)."""

    def __init__(self, name: str, inputs: tuple[str, ...], constants: dict | None = None,
                 ops: tuple[Operator, ...] = (), numeric_constants: bool = False):
        self.name = name
        self.inputs = tuple(inputs)
        self.constants = ConstantTable({str(k): float(v) for k, v in (constants or {}).items()},
                                       numeric_constants)
        self.terminals = self.inputs + tuple(self.constants)
        if len(set(self.terminals)) != len(self.terminals):
            raise ValueError(f"registry {name}: duplicate terminal names")
        self._ops: dict[str, Operator] = {}
        for op in ops:
            self.register(op)

    def register(self, op: Operator) -> None:
        """Add an operator after checking it (ValueError if it is faulty or its name is taken)."""
        if op.name in self._ops or op.name in self.terminals:
            raise ValueError(f"registry {self.name}: the name {op.name!r} is already taken")
        check_operator(op)
        self._ops[op.name] = op

    def op(self, name: str) -> Operator:
        try:
            return self._ops[name]
        except (KeyError, TypeError):
            raise TreeError(f"unknown operator {str(name)[:40]!r} in the {self.name} "
                            "search space") from None

    def is_op(self, name: str) -> bool:
        return name in self._ops

    def is_leaf(self, name: str) -> bool:
        return name in self.terminals or name in self.constants

    def operators(self) -> tuple[Operator, ...]:
        return tuple(self._ops.values())

    def names(self) -> tuple[str, ...]:
        """Every name a tree of this search space may use: operators, then terminals."""
        return tuple(self._ops) + self.terminals

    def __repr__(self) -> str:
        return f"Registry({self.name!r}: {len(self._ops)} operators, terminals {self.terminals})"


def registry_for(node) -> Registry:
    """PRUNERZERO when every name of the tree belongs to it, else EXTENDED."""
    names = set(PRUNERZERO.names())
    return PRUNERZERO if all(n.name in names for n in node.walk()) else EXTENDED


# ---- admission check (gplearn style) --------------------------------------------------------
def _probe_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    d = torch.float64
    mix = torch.tensor([0.0, 1e30, -1e30, 1.0, -1.0, 1e-30], dtype=d)
    full = [torch.zeros(4, 6, dtype=d), -torch.rand(4, 6, generator=g, dtype=d) - 0.1,
            torch.rand(4, 6, generator=g, dtype=d) + 0.1, torch.full((4, 6), 1e30, dtype=d),
            mix.repeat(4, 1), -mix.repeat(4, 1)]
    rows = [t[:1].clone() for t in full]
    scalars = [torch.tensor(0.0, dtype=d), torch.tensor(-2.0, dtype=d), torch.tensor(1e30, dtype=d)]
    return full + rows + scalars


def _broadcast(*shapes: tuple) -> tuple:
    """NumPy broadcasting of shapes (torch.broadcast_shapes is slow on the import path)."""
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    return tuple(max(dims) for dims in zip(*padded))


def _check_signature(op: Operator) -> None:
    try:
        params = list(inspect.signature(op.torch_fn).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: the probes will tell
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if not len(required) <= op.arity <= len(positional):
        raise ValueError(f"operator {op.name}: arity {op.arity} but its function takes "
                         f"{len(required)} argument(s)")


def check_operator(op: Operator) -> None:
    """Raise ValueError unless ``op`` is well formed: a sane name, an arity of 1 or 2 matching its
    function, and on zeros, negatives, huge values (1e30) and a mix including 0 and +-1e30, in
    shapes [4, 6], [1, 6] and [] and every broadcasting pair of them, an output that is a tensor
    of the broadcast shape, finite, and computed without modifying its arguments."""
    if _CHECKED.get(id(op)) is op:
        return
    if not isinstance(op.name, str) or not op.name.isidentifier() or op.name.startswith("_"):
        raise ValueError(f"operator name {op.name!r} must be a plain identifier")
    if op.arity not in (1, 2):
        raise ValueError(f"operator {op.name}: arity must be 1 or 2, not {op.arity}")
    if not callable(op.torch_fn):
        raise ValueError(f"operator {op.name}: torch_fn is not callable")
    _check_signature(op)
    cases = [(a,) for a in _PROBES] if op.arity == 1 else [(a, b) for a in _PROBES for b in _PROBES]
    for originals in cases:
        args = [a.clone() for a in originals]  # the probes themselves are never exposed
        try:
            out = op.torch_fn(*args)
        except TypeError as e:
            raise ValueError(f"operator {op.name}: arity {op.arity} does not fit its function "
                             f"({e})") from None
        except Exception as e:  # noqa: BLE001 - any failure on a probe refuses the operator
            raise ValueError(f"operator {op.name}: fails on a registration probe "
                             f"({type(e).__name__}: {e})") from None
        shapes = [tuple(a.shape) for a in args]
        want = _broadcast(*shapes)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"operator {op.name}: output shape {got} on inputs {shapes}, "
                             f"expected {want}")
        if out.dtype != args[0].dtype:
            raise ValueError(f"operator {op.name}: output dtype {out.dtype}, "
                             f"expected {args[0].dtype}")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"operator {op.name}: non-finite output on a registration probe "
                             f"(inputs of shapes {shapes})")
        if any(not torch.equal(a, b) for a, b in zip(args, originals)):
            raise ValueError(f"operator {op.name}: modifies its arguments in place")
    _CHECKED[id(op)] = op  # kept alive, so its id cannot be reused by another operator


_PROBES = _probe_inputs()
_CHECKED: dict[int, Operator] = {}
PRUNERZERO = Registry("prunerzero", ("W", "X", "G"), ops=BASIC)
EXTENDED = Registry("extended", ("W", "X", "G", "H", "S"), CONSTANTS, ops=BASIC + EXTRA,
                    numeric_constants=True)
