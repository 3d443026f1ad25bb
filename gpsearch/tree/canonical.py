"""Deduplication of metric trees: a canonical key, and a mask fingerprint on fixed probes.

A metric only matters through the mask it makes: the lowest scores of each row (or N of each M
in a row) are pruned. Two trees therefore get the same fitness when

1. ``canonical_key`` says so: both reduce to the same canonical tree, i.e. after the value-safe
   ``simplify``, the strictly increasing maps at the ROOT are stripped (they cannot change any
   row's ranking) and the operands of add and mul are sorted (IEEE + and * are commutative);
2. or, failing that, ``mask_fingerprint`` says so: the same masks on fixed, seeded probe tensors.

Root maps stripped (each strictly increasing, and numerically mild: in floating point it can only
merge values that were already within a rounding of each other, never swap two of them):
- skp, and abs / sqr / pow / sqrt / qrt of a provably non-negative argument (``simplify.sign``);
  of any other argument, sqr / pow / sqrt / qrt rank like abs (an increasing function of |x|);
- mms and zsn: one positive affine map per matrix (a constant argument gives zeros: the stripped
  tree is then constant too, and both are refused by ``check_score``);
- div(x, y) -> x: division by the positive scalar max(||y||, 1e-12);
- mul / pdiv by a positive constant (extended space);
- rown(x) -> x: a positive factor per row, which keeps per-row and N:M rankings (scope "row"
  only; a per-matrix ranking would change, so with scope "matrix" it is kept).
Root maps NOT stripped although increasing: exp (clamped at 100, underflows to 0 and rounds
1 + tiny to 1), log (the + 0.001 swallows tiny values), tanh (saturates at +-1), add of a
constant (swallows tiny values). In floating point these merge many distinct scores into ties,
which changes real masks; trees differing by them are left to the fingerprint, which evaluates
the real numerics (float32 first, as the evaluator does).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import torch

from ..errors import TreeError
from ..masks import Pattern, make_mask
from .interp import check_score, evaluate
from .node import Node
from .ops import EXTENDED, Registry
from .parse import parse_prefix, to_prefix
from .simplify import sign, simplify

COMMUTATIVE = frozenset({"add", "mul"})
INCREASING_ON_NONNEG = frozenset({"abs", "sqr", "pow", "sqrt", "qrt", "skp"})
INCREASING_IN_ABS = frozenset({"sqr", "pow", "sqrt", "qrt"})  # f(x) = g(|x|), g increasing
PROBE_SEEDS = (11, 23, 37)  # three fixed probe sets
PROBE_ROWS, PROBE_COLS = 48, 96


def _strip_once(node: Node, registry: Registry, scope: str) -> Node | None:
    """The argument of a ranking-preserving map at the root of ``node``, or None."""
    name, kids = node.name, node.children
    if not kids:
        return None
    a = kids[0]
    if name == "skp" or (name in INCREASING_ON_NONNEG and sign(a, registry) == "+"):
        return a
    if name in INCREASING_IN_ABS:  # ranks like |a|
        return simplify(Node("abs", (a,)), registry)
    if name in ("mms", "zsn", "div"):
        return a
    if name == "rown" and scope == "row":
        return a
    if name in ("mul", "pdiv"):
        b = kids[1]
        if _positive_constant(b, registry):
            return a
        if name == "mul" and _positive_constant(a, registry):
            return b
    return None


def _positive_constant(node: Node, registry: Registry) -> bool:
    return not node.children and registry.constants.get(node.name, 0.0) > 0.0


def strip_root(node: Node, registry: Registry = EXTENDED, scope: str = "row") -> Node:
    """Remove ranking-preserving maps at the root until none is left (see the module doc)."""
    while True:
        inner = _strip_once(node, registry, scope)
        if inner is None:
            return node
        node = inner


def sort_commutative(node: Node) -> Node:
    """The tree with the two operands of every add and mul in a fixed (text) order."""
    if not node.children:
        return node
    kids = tuple(sort_commutative(c) for c in node.children)
    if node.name in COMMUTATIVE:
        kids = tuple(sorted(kids, key=to_prefix))
    return Node(node.name, kids)


def canonical_tree(node: Node, registry: Registry = EXTENDED, scope: str = "row") -> Node:
    """simplify -> strip increasing maps at the root -> sort commutative operands."""
    return sort_commutative(strip_root(simplify(node, registry), registry, scope))


def canonical_key(node: Node, registry: Registry = EXTENDED, scope: str = "row") -> str:
    """A string equal for trees that are certain to give the same masks (module doc)."""
    return to_prefix(canonical_tree(node, registry, scope))


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
    """What the searcher needs from the tree package, on prefix expressions (it cannot import
    torch itself): OOS, the canonical key and the mask fingerprint at the search's sparsity and
    pattern (the pattern's scope decides whether rown may be stripped)."""

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
