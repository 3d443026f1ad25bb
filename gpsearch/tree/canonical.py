"""Deduplication of metric trees: a canonical key (the mask fingerprint on fixed probes, the
second test below, lives in ``gpsearch.pruning.fingerprint``: it needs the masks).

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

from gpsearch.tree.node import Node, to_prefix
from gpsearch.tree.ops import EXTENDED, Registry
from gpsearch.tree.simplify import sign, simplify

COMMUTATIVE = frozenset({"add", "mul"})
INCREASING_ON_NONNEG = frozenset({"abs", "sqr", "pow", "sqrt", "qrt", "skp"})
INCREASING_IN_ABS = frozenset({"sqr", "pow", "sqrt", "qrt"})  # f(x) = g(|x|), g increasing


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
