"""Canonical keys and mask fingerprints: equal keys only where every row's ranking is the same."""

import random
import time

import pytest
import torch

from gpsearch.errors import TreeError
from gpsearch.pruning.fingerprint import mask_fingerprint
from gpsearch.pruning.masks import make_mask, parse_pattern
from gpsearch.tree import EXTENDED, PRUNERZERO, Node, check_score, evaluate, parse_prefix, to_prefix
from gpsearch.tree.canonical import canonical_key, canonical_tree, strip_root
from gpsearch.tree.simplify import sign
from tests.tree.test_simplify import random_tree, terminals

UNSTRUCTURED = parse_pattern("unstructured")
PATTERNS = [(0.25, UNSTRUCTURED), (0.5, UNSTRUCTURED), (0.75, UNSTRUCTURED),
            (0.5, parse_pattern("2:4")), (0.5, parse_pattern("4:8"))]


pytestmark = pytest.mark.usefixtures("one_thread")


def key(expr, scope="row"):
    return canonical_key(parse_prefix(expr, EXTENDED), EXTENDED, scope)


def test_known_equivalences():
    wanda = key("mul(W, sqrt(X))")
    assert key("mul(sqrt(X), W)") == wanda
    assert key("mms(mul(sqrt(X), skp(W)))") == wanda
    assert key("sqr(mul(neg(W), neg(sqrt(X))))") == wanda
    assert key("div(zsn(mul(W, sqrt(abs(X)))), G)") == wanda
    assert key("mul(abs(mul(W, W)), mms(G))") == key("mul(mms(G), mul(W, W))")
    assert key("mul(mul(W, X), c2)") == key("mul(W, X)") == key("pdiv(mul(X, W), c10)")
    assert key("sqr(sub(W, G))") == key("abs(sub(W, G))") == key("sqrt(neg(sub(G, W)))")
    assert key("rown(W)") == "W" and key("rown(W)", scope="matrix") == "rown(W)"


def test_saturating_root_maps_are_kept():
    """exp, log, tanh and adding a constant merge distinct float scores into ties: kept."""
    for expr in ("exp(W)", "log(W)", "tanh(W)", "add(W, c1)", "exp(log(W))", "neg(W)",
                 "sqrt(sub(W, G))", "coln(W)"):
        assert key(expr) != "W" and key(expr) != key("sub(W, G)"), expr


def test_equivalent_variants_share_a_key():
    """Random trees wrapped in increasing root maps and with operands commuted: one key."""
    rng = random.Random(2)
    wrappers = ["skp", "mms", "zsn", "div"]
    for _ in range(600):
        base = random_tree(rng, PRUNERZERO, rng.randint(1, 4))
        variant = _commute(base, rng)
        for _ in range(rng.randint(1, 3)):
            w = rng.choice(wrappers + (["sqrt", "sqr", "abs"] if sign(variant) == "+" else []))
            kids = (variant, random_tree(rng, PRUNERZERO, 2)) if w == "div" else (variant,)
            variant = Node(w, kids)
        assert canonical_key(variant) == canonical_key(base), (to_prefix(base), to_prefix(variant))


def _commute(node, rng):
    if not node.children:
        return node
    kids = tuple(_commute(c, rng) for c in node.children)
    if node.name in ("add", "mul") and rng.random() < 0.5:
        kids = kids[::-1]
    return Node(node.name, kids)


def _masks(node, t):
    try:
        score = check_score(evaluate(node, t, EXTENDED, torch.float64), t["W"].shape).contiguous()
    except TreeError:
        return None, None
    return score, [make_mask(score, s, p) for s, p in PATTERNS]


def _near_ties(score):
    """True when a row holds two scores within 1e-9 (relative) of each other: a map that is
    increasing in exact arithmetic may merge them in floating point."""
    s = score.sort(dim=-1).values
    gap = s[:, 1:] - s[:, :-1]
    scale = s.abs()[:, 1:].clamp_min(1e-300)
    return bool((gap <= 1e-9 * scale).any())


def test_canonical_tree_keeps_every_mask_on_random_trees():
    """The canonical tree (OOS + root stripping + sorting) makes the same masks as the original,
    at several sparsities and N:M patterns, and is valid exactly when the original is."""
    rng = random.Random(3)
    compared = stripped = 0
    for i in range(700):
        reg = PRUNERZERO if i % 2 else EXTENDED
        tree = random_tree(rng, reg, rng.randint(1, 5))
        canon = canonical_tree(tree, reg)
        t = terminals(i % 5, rows=8, cols=16)
        s1, m1 = _masks(tree, t)
        s2, m2 = _masks(canon, t)
        if s1 is None or s2 is None:
            raw = _raw(tree, t)
            if raw is not None and torch.isfinite(raw).all() and not _near_ties(raw.expand(8, 16)):
                assert (s1 is None) == (s2 is None), (to_prefix(tree), to_prefix(canon))
            continue
        if _near_ties(s1) or _near_ties(s2):
            continue
        assert all(torch.equal(a, b) for a, b in zip(m1, m2)), (to_prefix(tree), to_prefix(canon))
        compared += 1
        stripped += strip_root(tree, reg) != tree
    assert compared > 250 and stripped > 60, (compared, stripped)


def _raw(node, t):
    try:
        return evaluate(node, t, EXTENDED, torch.float64)
    except TreeError:
        return None


def test_fingerprint_dedups_by_mask():
    def fp(e, s=0.5, p=UNSTRUCTURED):
        return mask_fingerprint(parse_prefix(e, EXTENDED), s, p)

    wanda = fp("mul(W, sqrt(X))")
    assert fp("sqrt(mul(sqr(W), X))") == wanda  # same masks, different key
    assert fp("exp(mul(W, sqrt(X)))") == fp("exp(mul(W, sqrt(X)))")  # deterministic
    assert fp("W") != wanda and fp("mul(W, X)") != wanda
    assert fp("mul(W, sqrt(X))", 0.5, parse_pattern("2:4")) != wanda
    assert fp("mul(W, sqrt(X))", 0.25) != wanda


def test_fingerprint_reports_invalid_trees():
    def fp(e):
        return mask_fingerprint(parse_prefix(e, EXTENDED), 0.5, UNSTRUCTURED)

    assert fp("sub(W, W)").startswith("invalid: ") and "constant" in fp("sub(W, W)")
    assert "constant" in fp("c2")
    assert "NaN/inf" in fp("sqr(sqr(sqr(sqr(exp(X)))))")
    assert not fp("X").startswith("invalid")  # one score per input channel still ranks a row
    assert not fp("mul(abs(mul(W, W)), mms(G))").startswith("invalid")


def test_fingerprint_is_cheap_and_handles_odd_nm():
    tree = parse_prefix("mul(abs(mul(W, W)), mms(G))", EXTENDED)
    mask_fingerprint(tree, 0.5, UNSTRUCTURED)
    t0 = time.perf_counter()
    for _ in range(20):
        mask_fingerprint(tree, 0.5, UNSTRUCTURED)
    assert (time.perf_counter() - t0) / 20 < 0.05
    assert not mask_fingerprint(tree, 5 / 7, parse_pattern("5:7")).startswith("invalid")
