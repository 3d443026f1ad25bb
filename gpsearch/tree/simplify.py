"""Opposing-operation simplification (OOS): exact rewrite rules on ``Node``, no sympy.

``simplify(node)`` rewrites bottom-up until no rule applies. Every rule here is VALUE-SAFE: it
keeps the value of the subtree (so it may fire anywhere in a tree, not only at the root), under
the protected semantics of ``ops.py`` (REFERENCE section 1). "Exact" below means bit-identical in
IEEE arithmetic; "up to rounding" means equal in exact arithmetic, with the rewritten form doing
fewer roundings (and overflowing less: sqrt(sqr(x)) overflows for |x| > 1e19 in float32, abs(x)
never). The rules never grow a tree, never change a subtree's shape, and need no constants.

Rules that keep only the per-row RANKING (stripping an increasing function such as mms or sqrt)
are not value-safe inside a tree (add(W, mms(G)) != add(W, G)); they live in ``canonical.py`` and
apply at the root only.

Deliberately NOT rules, because the protected semantics change the value:
- exp(log(x)) = |x| + 0.001 (not |x|); log(exp(x)) = log(exp(min(x, 100)) + 0.001) (not x);
- rown(rown(x)) differs from rown(x) on rows whose |x| sums to less than the 1e-12 floor;
- anything involving div's Frobenius norm and a broadcast (div(X, W) has W's shape, X does not).

Sign analysis (``sign``) uses the terminal contract of gpsearch: every input terminal is >= 0
(W = |weight|, X = mean squared norm, G = 100 * sqrt(sum of squares), H = diagonal of a positive
definite inverse, S = sqrt(X)); see NONNEG_TERMINALS. A terminal not listed there is treated as
of unknown sign, so a future signed terminal cannot make a rule unsafe.

sympy: none here. sympy's simplify() has no time limit (about 1% of random trees take seconds),
so the search never calls it; the summary prints the plain, unsimplified sympy form instead.
"""

from __future__ import annotations

from gpsearch.tree.node import Node
from gpsearch.tree.ops import EXTENDED, Registry

NONNEG_TERMINALS = frozenset({"W", "X", "G", "H", "S"})  # see the module doc: inputs are >= 0
NONNEG_OPS = frozenset({"sqr", "pow", "abs", "sqrt", "exp", "mms", "qrt"})  # value always >= 0
SIGN_KEEPING = frozenset({"skp", "tanh", "rown", "coln"})  # same sign as their argument
EVEN = frozenset({"sqr", "pow", "abs", "sqrt", "log", "qrt"})  # depend on |x| only
NORMALISERS = frozenset({"mms", "zsn"})  # invariant to any positive affine map of the argument


def sign(node: Node, registry: Registry = EXTENDED) -> str:
    """'+' if the subtree is provably >= 0 everywhere, '-' if provably <= 0, '?' otherwise."""
    name, kids = node.name, node.children
    if not kids:
        if name in registry.constants:
            value = registry.constants[name]
            return "+" if value >= 0 else "-"
        return "+" if name in NONNEG_TERMINALS else "?"
    if name in NONNEG_OPS:
        return "+"
    first = sign(kids[0], registry)
    if name in SIGN_KEEPING or name in ("div", "pdiv"):  # div / pdiv scale by a positive number
        return first
    if name == "neg":
        return {"+": "-", "-": "+"}.get(first, "?")
    if name in ("add", "sub", "mul"):
        second = sign(kids[1], registry)
        if name == "sub":
            second = {"+": "-", "-": "+"}.get(second, "?")
        if name == "mul":
            if "?" in (first, second):
                return "?"
            return "+" if first == second else "-"
        return first if first == second else "?"
    return "?"  # log, zsn and anything unknown


def _rule(node: Node, registry: Registry) -> Node | None:
    """One value-safe rewrite at the root of ``node`` (children already simplified), or None."""
    name, kids = node.name, node.children
    a = kids[0] if kids else None
    b = kids[1] if len(kids) > 1 else None
    if name == "skp":  # identity: exact
        return a
    if name == "pow":  # the same function as sqr (x * x): exact
        return Node("sqr", kids)
    if name == "neg" and a.name == "neg":  # -(-x) = x: exact
        return a.children[0]
    if name == "neg" and a.name == "sub":  # -(p - q) = q - p: exact (rounding is symmetric)
        return Node("sub", (a.children[1], a.children[0]))
    if name in EVEN and a.name in ("neg", "abs"):  # f(-x) = f(|x|) = f(x) for f of |x|: exact
        return Node(name, a.children)
    if name == "abs" and sign(a, registry) == "+":  # |x| = x for x >= 0: exact
        return a
    if name == "sqrt" and a.name in ("sqr", "pow"):  # sqrt(x*x) = |x|: exact in IEEE binary
        return Node("abs", a.children)  # arithmetic with round-to-nearest (no over/underflow)
    if name in ("sqr", "pow") and a.name == "sqrt":  # sqrt(|x|)^2 = |x|: up to rounding
        return Node("abs", a.children)
    if name == "qrt" and a.name in ("sqr", "pow"):  # |x*x|^(1/4) = sqrt(|x|): up to rounding
        return Node("sqrt", a.children)
    if name in NORMALISERS and a.name in NORMALISERS:
        # mms and zsn are positive affine maps of their argument (or all zeros when it is
        # constant or has one element), and both are invariant to positive affine maps (and give
        # zeros for a constant), so N(A(x)) = N(x) for N, A in {mms, zsn}: up to rounding.
        return Node(name, a.children)
    if name == "sub" and b.name == "neg":  # p - (-q) = p + q: exact
        return Node("add", (a, b.children[0]))
    if name == "add" and b.name == "neg":  # p + (-q) = p - q: exact
        return Node("sub", (a, b.children[0]))
    if name == "add" and a.name == "neg":  # (-p) + q = q - p: exact
        return Node("sub", (b, a.children[0]))
    if name == "mul" and a.name == "neg" and b.name == "neg":  # (-p)(-q) = pq: exact
        return Node("mul", (a.children[0], b.children[0]))
    if name in ("div", "pdiv") and b.name in ("neg", "abs"):
        # div divides by ||y||_2 and pdiv by |y| + 1e-8: both see |y| only: exact
        return Node(name, (a, b.children[0]))
    return None


def simplify(node: Node, registry: Registry = EXTENDED) -> Node:
    """The tree with every value-safe opposing-operation rule applied until none fires.

    Never larger than the input, same value (see the module doc for which rules are exact and
    which hold up to rounding), same shape. Trees are at most MAX_HEIGHT deep, so plain
    recursion is safe here."""
    memo: dict[Node, Node] = {}
    return _simplify(node, registry, memo)


def _simplify(node: Node, registry: Registry, memo: dict) -> Node:
    if not node.children:
        return node
    if node in memo:
        return memo[node]
    current = Node(node.name, tuple(_simplify(c, registry, memo) for c in node.children))
    while True:  # a rule builds one new node over simplified parts: re-check only the top
        nxt = _rule(current, registry)
        if nxt is None:
            break
        current = nxt
    memo[node] = current
    return current
