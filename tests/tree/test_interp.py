"""The interpreter against independent torch computations, check_score, and sympy_expr."""

import random

import pytest
import sympy
import torch
from sympy.core.function import UndefinedFunction

from gpsearch.errors import TreeError
from gpsearch.tree import (
    EXTENDED,
    PRUNERZERO,
    Node,
    check_score,
    evaluate,
    load_tree,
    parse_prefix,
    sympy_expr,
)

OUT, IN = 7, 11


def terms(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"W": torch.randn(OUT, IN, generator=g).abs(), "X": torch.rand(1, IN, generator=g) * 5,
            "G": torch.rand(OUT, IN, generator=g) * 3, "H": torch.rand(1, IN, generator=g) + 0.1,
            "S": torch.rand(1, IN, generator=g)}


def f64(t):
    return {k: v.double() for k, v in t.items()}


def random_tree(rng, ops, leaves, depth):
    if depth == 0 or rng.random() < 0.25:
        return Node(rng.choice(leaves))
    o = rng.choice(ops)
    return Node(o.name, tuple(random_tree(rng, ops, leaves, depth - 1) for _ in range(o.arity)))


@pytest.mark.parametrize("seed", range(3))
def test_published_tree_is_abs_w_squared_times_mms_g(seed):
    t = terms(seed)
    W, G = t["W"].double(), t["G"].double()
    expected = (W * W).abs() * ((G - G.min()) / (G.max() - G.min()))
    out = evaluate(load_tree("pruner_zero"), t)
    assert out.dtype == torch.float32 and out.shape == (OUT, IN)
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-7)


def test_wanda_gblm_magnitude():
    t = terms(4)
    W, X, G = t["W"].double(), t["X"].double(), t["G"].double()
    wanda = evaluate(load_tree("wanda"), t)
    assert wanda.shape == (OUT, IN) and torch.allclose(wanda.double(), W * X.sqrt(), rtol=1e-6)
    gblm = evaluate(load_tree("gblm"), t)
    assert torch.allclose(gblm.double(), W * X.sqrt() + W * G, rtol=1e-6)
    assert torch.equal(evaluate(load_tree("magnitude"), t), t["W"])


def test_ria_tree_is_ria():
    t = terms(5)
    W, X = t["W"].double(), t["X"].double()
    row_term = W / W.sum(dim=1, keepdim=True)  # sum over the input dimension
    col_term = W / W.sum(dim=0, keepdim=True)  # sum over the output dimension
    ria = (row_term + col_term) * X.sqrt().sqrt()  # ||x||^0.5 with X = ||x||^2
    out = evaluate(load_tree("ria"), t, EXTENDED)
    assert torch.allclose(out.double(), ria, rtol=1e-5)
    rowwise = row_term * X.sqrt().sqrt()  # a different metric: the test can tell them apart
    assert not torch.allclose(out.double(), rowwise, rtol=1e-3)
    with pytest.raises(TreeError, match="rown|coln|qrt"):
        evaluate(load_tree("ria"), t)  # PRUNERZERO by default


def test_float32_then_float64_when_float32_overflows():
    t = {"W": torch.tensor([[1.0, 2.0]]), "G": torch.tensor([[95.0, 99.0]])}
    assert evaluate(parse_prefix("mul(W, G)"), t).dtype == torch.float32
    out = evaluate(parse_prefix("exp(G)"), t)  # e^99 is beyond float32
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.allclose(out, torch.tensor([[95.0, 99.0]], dtype=torch.float64).exp())
    forced = evaluate(parse_prefix("exp(G)"), t, PRUNERZERO, torch.float32)
    assert forced.dtype == torch.float32 and torch.isinf(forced).all()
    assert evaluate(parse_prefix("W"),
                    {"W": torch.ones(2, 2, dtype=torch.float16)}).dtype == torch.float32


def test_argument_order_of_binary_operators():
    t = f64(terms(9))
    W, G, X = t["W"], t["G"], t["X"]
    d = torch.float64
    assert torch.allclose(evaluate(parse_prefix("sub(W, G)"), t, PRUNERZERO, d), W - G)
    assert torch.allclose(evaluate(parse_prefix("div(X, G)"), t, PRUNERZERO, d),
                          X.expand(OUT, IN) / torch.linalg.norm(G))
    assert torch.allclose(evaluate(parse_prefix("pdiv(sub(G, X), W)", EXTENDED), t, EXTENDED, d),
                          (G - X) / (W.abs() + 1e-8))
    w, g = sympy.Symbol("W", positive=True), sympy.Symbol("G", positive=True)
    assert sympy_expr(parse_prefix("sub(W, G)")) == w - g


def test_constants_and_shared_subtrees():
    t = terms(6)
    out = evaluate(parse_prefix("add(mul(W, c2), c0.5)", EXTENDED), t, EXTENDED)
    assert torch.allclose(out, t["W"] * 2 + 0.5)
    w = Node("W")
    assert torch.allclose(evaluate(Node("mul", (w, w)), t), t["W"] * t["W"])
    assert evaluate(parse_prefix("c10", EXTENDED), {}, EXTENDED).item() == 10.0
    meta = {"W": torch.empty(OUT, IN, device="meta"), "X": torch.empty(1, IN, device="meta")}
    out = evaluate(parse_prefix("mul(add(W, c2), qrt(X))", EXTENDED), meta, EXTENDED, torch.float32)
    assert out.device.type == "meta" and out.shape == (OUT, IN)  # stays on the terminals' device


def test_missing_or_bad_terminals():
    t = terms(7)
    with pytest.raises(TreeError, match="'G'"):
        evaluate(parse_prefix("mul(W, G)"), {"W": t["W"]})
    with pytest.raises(TreeError, match="'H'"):
        evaluate(parse_prefix("H", EXTENDED), {"W": t["W"]}, EXTENDED)
    with pytest.raises(TreeError, match="tensor"):
        evaluate(parse_prefix("W"), {"W": [[1.0]]})
    with pytest.raises(TreeError):
        evaluate(parse_prefix("W"), [t["W"]])
    with pytest.raises(TreeError, match="unknown"):
        evaluate(Node("evil", (Node("W"),)), t)
    with pytest.raises(TreeError, match="takes 2"):
        evaluate(Node("mul", (Node("W"),)), t)


def test_random_trees_evaluate_without_touching_their_inputs():
    rng = random.Random(99)
    t = terms(8)
    copies = {k: v.clone() for k, v in t.items()}
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        tree = random_tree(rng, EXTENDED.operators(), EXTENDED.terminals, rng.randint(0, 6))
        out = evaluate(tree, t, EXTENDED)
        assert out.dtype in (torch.float32, torch.float64)
        assert out.dim() == 0 or out.shape in ((1, IN), (OUT, IN))
        try:
            assert check_score(out, (OUT, IN)).shape == (OUT, IN)
            outcomes["ok"] += 1
        except TreeError:
            outcomes["refused"] += 1
    assert all(torch.equal(t[k], copies[k]) for k in t)
    assert outcomes["ok"] > 100 and outcomes["refused"] > 5


def test_check_score_broadcasts_and_refuses():
    shape = (4, 6)
    row = torch.arange(6.0).view(1, 6)
    out = check_score(row, shape)
    assert out.shape == shape and torch.equal(out[3], row[0])
    full = torch.rand(4, 6)
    assert check_score(full, torch.Size(shape)) is full
    cases = [
        (torch.tensor(3.0), "does not depend"), (torch.ones(4, 6), "constant"),
        (torch.full((1, 6), 2.0), "constant"), (torch.ones(1, 1), "constant"),
        (torch.ones(5, 1), "wrong shape"), (torch.rand(4, 7), "wrong shape"),
        (torch.rand(2, 4, 6), "wrong shape"), (torch.rand(6), None),
        (torch.tensor([[float("nan")] + [1.0] * 5] * 4), "NaN/inf"),
        (torch.tensor([[float("inf")] + [1.0] * 5]), "NaN/inf"),
        (torch.tensor([[float("nan")] * 6] * 4), "NaN/inf"), ([[1.0, 2.0]], "tensor"),
    ]
    for score, match in cases:
        if match is None:  # a 1-D [in] score broadcasts like [1, in]
            assert check_score(score, shape).shape == shape
            continue
        with pytest.raises(TreeError, match=match):
            check_score(score, shape)


def test_sympy_expressions():
    W, X, G = (sympy.Symbol(n, positive=True) for n in "WXG")
    assert sympy_expr(load_tree("wanda")) == W * sympy.sqrt(X)
    assert sympy_expr(load_tree("pruner_zero")) == W ** 2 * sympy.Function("mms")(G)
    assert sympy_expr(load_tree("ria"), EXTENDED) == \
        X ** sympy.Rational(1, 4) * (sympy.Function("coln")(W) + sympy.Function("rown")(W))
    assert sympy_expr(parse_prefix("mul(c0.5, W)", EXTENDED), EXTENDED) == W / 2
    assert sympy_expr(parse_prefix("log(W)")) == sympy.log(W + sympy.Rational(1, 1000))
    assert sympy.simplify(sympy_expr(parse_prefix("sub(sqrt(sqr(W)), abs(W))"))) == 0


def test_sympy_agrees_with_torch_on_closed_form_operators():
    opaque = [o.name for o in EXTENDED.operators() if isinstance(o.sympy_fn, UndefinedFunction)]
    assert sorted(opaque) == ["coln", "div", "mms", "mnn", "powr", "rcn", "rown", "zsn"]
    closed = [o for o in EXTENDED.operators() if o.name not in opaque]
    assert {o.name for o in closed} >= {"sqr", "log", "exp", "sqrt", "add", "pdiv", "qrt"}
    rng = random.Random(5)
    values = {"W": 0.7, "X": 2.5, "G": 1.3, "H": 0.4, "S": 1.9}
    t = {k: torch.tensor([[v]], dtype=torch.float64) for k, v in values.items()}
    for _ in range(60):
        tree = random_tree(rng, closed, EXTENDED.terminals, rng.randint(1, 4))
        expr = sympy_expr(tree, EXTENDED)
        numeric = float(expr.subs({sympy.Symbol(k, positive=True): v
                                   for k, v in values.items()}).evalf())
        value = float(evaluate(tree, t, EXTENDED, torch.float64))
        assert numeric == pytest.approx(value, rel=1e-9, abs=1e-12)
