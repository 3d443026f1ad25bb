"""Operator semantics (against hand computations) and the registration check."""

import math

import pytest
import torch

from gpsearch.errors import TreeError
from gpsearch.tree import EXTENDED, PRUNERZERO, Operator, Registry, evaluate, parse_prefix
from gpsearch.tree.ops import check_operator

D = torch.float64


def op(name, *args):
    return EXTENDED.op(name).torch_fn(*[torch.as_tensor(a, dtype=D) for a in args])


def t(values):
    return torch.tensor(values, dtype=D)


def test_registry_names_and_arities():
    unary = {"sqr", "neg", "abs", "log", "exp", "sqrt", "tanh", "pow", "skp", "mms", "zsn"}
    binary = {"add", "sub", "mul", "div"}
    assert {o.name for o in PRUNERZERO.operators()} == unary | binary
    assert all(PRUNERZERO.op(n).arity == 1 for n in unary)
    assert all(PRUNERZERO.op(n).arity == 2 for n in binary)
    assert PRUNERZERO.terminals == ("W", "X", "G") and PRUNERZERO.constants == {}
    assert set(PRUNERZERO.names()) == unary | binary | {"W", "X", "G"}
    extra = {"pdiv": 2, "rown": 1, "coln": 1, "qrt": 1, "powr": 2, "sigm": 1, "mnn": 1, "rcn": 1}
    assert {o.name: o.arity for o in EXTENDED.operators()} == \
        {**{n: PRUNERZERO.op(n).arity for n in unary | binary}, **extra}
    assert EXTENDED.inputs == ("W", "X", "G", "H", "S")
    assert EXTENDED.constants == {"c0.5": 0.5, "c1": 1.0, "c2": 2.0, "c10": 10.0}
    assert EXTENDED.terminals == EXTENDED.inputs + tuple(EXTENDED.constants)
    assert all(o.doc for o in EXTENDED.operators())
    with pytest.raises(TreeError, match="unknown operator 'rown'"):
        PRUNERZERO.op("rown")


def test_elementwise_semantics_by_hand():
    x = t([[0.0, -2.0, 3.0]])
    assert torch.equal(op("sqr", x), t([[0.0, 4.0, 9.0]]))
    assert torch.equal(op("pow", x), op("sqr", x))
    assert torch.equal(op("neg", x), t([[0.0, 2.0, -3.0]]))
    assert torch.equal(op("abs", x), t([[0.0, 2.0, 3.0]]))
    assert torch.equal(op("skp", x), x)
    assert torch.equal(op("sqrt", x), t([[0.0, math.sqrt(2), math.sqrt(3)]]))
    assert torch.allclose(op("tanh", x), t([[0.0, math.tanh(-2), math.tanh(3)]]))
    assert torch.equal(op("qrt", t([16.0, -81.0, 0.0])), t([2.0, 3.0, 0.0]))
    assert (torch.equal(op("add", x, 1.5), x + 1.5)
            and torch.equal(op("sub", x, x), torch.zeros_like(x)))
    assert torch.equal(op("mul", x, t([[2.0], [3.0]])), t([[0.0, -4.0, 6.0], [0.0, -6.0, 9.0]]))


def test_protected_log_and_clamped_exp():
    assert float(op("log", 0.0)) == pytest.approx(math.log(0.001), rel=1e-12)
    assert float(op("log", -2.0)) == pytest.approx(math.log(2.001), rel=1e-12)
    assert float(op("exp", 1.0)) == pytest.approx(math.e, rel=1e-12)
    big = op("exp", t([100.0, 1000.0, 1e30]))
    assert torch.isfinite(big).all() and torch.equal(big, torch.full((3,), math.exp(100), dtype=D))
    assert float(op("exp", -1e30)) == 0.0


def test_mms_and_zsn_over_the_whole_tensor():
    x = t([[1.0, 3.0], [5.0, 9.0]])
    assert torch.equal(op("mms", x), t([[0.0, 0.25], [0.5, 1.0]]))
    z = op("zsn", x)
    assert torch.allclose(z, (x - 4.5) / x.flatten().std(unbiased=True))
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["mms", "zsn"])
@pytest.mark.parametrize("value", [[[2.0, 2.0], [2.0, 2.0]], [[0.0] * 3], [[7.0]], 5.0])
def test_mms_and_zsn_of_a_constant_are_zeros_not_nan(name, value):
    x = t(value)
    assert torch.equal(op(name, x), torch.zeros_like(x))


def test_div_is_by_the_frobenius_norm_of_y():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 6, generator=g, dtype=D), torch.randn(4, 6, generator=g, dtype=D)
    assert torch.allclose(op("div", x, y), x / torch.linalg.norm(y), rtol=1e-14, atol=0)
    row = x[:1]
    out = op("div", row, y)  # broadcast: the result has the shape of the pair
    assert out.shape == (4, 6) and torch.allclose(out, row.expand(4, 6) / torch.linalg.norm(y))
    assert torch.allclose(op("div", y, row), y / torch.linalg.norm(row))


def test_div_by_a_zero_norm_is_protected():
    x = t([[1.0, -2.0]])
    out = op("div", x, torch.zeros(1, 2, dtype=D))
    assert torch.isfinite(out).all() and torch.equal(out, x / 1e-12)


def test_pdiv_rown_coln():
    x, y = t([[1.0, -3.0], [2.0, 2.0]]), t([[2.0, -4.0], [0.0, 0.5]])
    assert torch.equal(op("pdiv", x, y), x / (y.abs() + 1e-8))
    assert float(op("pdiv", 1.0, 0.0)) == pytest.approx(1e8)
    assert float(op("pdiv", 1.0, -2.0)) > 0  # the sign of y is dropped
    assert torch.allclose(op("rown", x), t([[0.25, -0.75], [0.5, 0.5]]))  # over the input dim
    # over the output dim
    assert torch.allclose(op("coln", x), t([[1 / 3, -3 / 5], [2 / 3, 2 / 5]]))
    zero_row = t([[0.0, 0.0], [1.0, 3.0]])
    assert torch.equal(op("rown", zero_row), t([[0.0, 0.0], [0.25, 0.75]]))
    assert torch.equal(op("coln", zero_row), t([[0.0, 0.0], [1.0, 1.0]]))


def test_no_operator_modifies_its_arguments():
    g = torch.Generator().manual_seed(2)
    for o in EXTENDED.operators():
        args = [torch.randn(3, 5, generator=g, dtype=D) for _ in range(o.arity)]
        copies = [a.clone() for a in args]
        o.torch_fn(*args)
        assert all(torch.equal(a, c) for a, c in zip(args, copies)), o.name


@pytest.mark.parametrize("bad, match", [
    (Operator("inv", 1, lambda x: 1.0 / x), "non-finite"),  # inf on zeros
    (Operator("selfdiv", 1, lambda x: x / x), "non-finite"),  # NaN on zeros
    (Operator("rawsqrt", 1, torch.sqrt), "non-finite"),  # NaN on negatives
    (Operator("rawlog", 1, lambda x: torch.log(x.abs())), "non-finite"),  # -inf on zeros
    (Operator("pow11", 1, lambda x: x ** 11), "non-finite"),  # overflows on 1e30
    (Operator("bad", 2, lambda x: x), "arity 2 but its function takes 1"),
    (Operator("bad", 1, lambda x, y: x + y), "arity 1 but its function takes 2"),
    (Operator("bad", 1, torch.add), "arity|fails"),
    (Operator("bad", 3, lambda x, y, z: x), "arity"),
    (Operator("flat", 1, lambda x: x.reshape(-1)), "shape"),
    (Operator("total", 1, lambda x: x.sum()), "shape"),
    (Operator("first", 2, lambda x, y: x), "shape"),  # does not broadcast with y
    (Operator("num", 1, lambda x: 1.0), "shape"),
    (Operator("sign", 1, lambda x: x > 0), "dtype"),
    (Operator("inplace", 1, lambda x: x.abs_()), "in place"),
    (Operator("bad name", 1, lambda x: x), "identifier"),
    (Operator("W", 1, lambda x: x), "taken"),
    (Operator("abs", 1, lambda x: x), "taken"),
])
def test_registration_refuses_faulty_operators(bad, match):
    reg = Registry("t", ("W",))
    reg.register(Operator("abs", 1, torch.abs))
    with pytest.raises(ValueError, match=match):
        reg.register(bad)
    assert [o.name for o in reg.operators()] == ["abs"]
    assert reg.op("abs").torch_fn is torch.abs


def test_probes_survive_a_refused_in_place_operator():
    reg = Registry("t", ("W",))
    with pytest.raises(ValueError, match="in place"):
        reg.register(Operator("zap", 1, lambda x: x.zero_()))
    with pytest.raises(ValueError, match="non-finite"):  # still sees zeros and negatives
        reg.register(Operator("rawlog", 1, lambda x: torch.log(x)))


def test_a_good_custom_operator_is_usable():
    reg = Registry("custom", ("W", "X"), {"c3": 3.0})
    for o in PRUNERZERO.operators():
        reg.register(o)
    reg.register(Operator("half", 1, lambda x: x * 0.5, lambda a: a / 2, "x / 2"))
    check_operator(reg.op("half"))
    tree = parse_prefix("mul(half(W), c3)", reg)
    w = torch.rand(2, 3)
    assert torch.allclose(evaluate(tree, {"W": w}, reg), w * 1.5)
    with pytest.raises(ValueError, match="duplicate"):
        Registry("dup", ("W", "W"))


def test_optishear_operators_against_their_definitions():
    w = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]], dtype=D)
    rows, cols = [6.0, 2.0], [1.5, 2.0, 4.5]
    rcn = EXTENDED.op("rcn").torch_fn(w)
    for i in range(2):
        for j in range(3):
            assert rcn[i, j].item() == pytest.approx(w[i, j].item() / (rows[i] + cols[j]))
    assert torch.allclose(EXTENDED.op("mnn").torch_fn(w), w / (8.0 / 6))
    assert torch.allclose(EXTENDED.op("sigm").torch_fn(w), 1 / (1 + torch.exp(-w)))
    x = torch.tensor([[4.0, 0.25, 9.0]], dtype=D)
    assert torch.allclose(EXTENDED.op("powr").torch_fn(x, torch.tensor(0.5, dtype=D)), x.sqrt())
    assert torch.allclose(EXTENDED.op("powr").torch_fn(x, torch.tensor(9.0, dtype=D)), x ** 4)


def test_numeric_constants_only_in_the_extended_registry():
    from gpsearch.tree import parse_prefix
    from gpsearch.tree.ops import constant_name

    assert "c0.37" in EXTENDED.constants and EXTENDED.constants["c-2"] == -2.0
    assert EXTENDED.is_leaf("c12.5") and not PRUNERZERO.is_leaf("c0.37")
    for bad in ("c", "c01", "c1e5", "c0.1234567", "c12345", "cnan", "cinf", "c.5"):
        assert bad not in EXTENDED.constants, bad
    assert constant_name(0.25) == "c0.25" and constant_name(3.0) == "c3"
    tree = parse_prefix("mul(W, powr(X, c0.37))", EXTENDED)
    with pytest.raises(TreeError):
        parse_prefix("mul(W, c0.37)", PRUNERZERO)
    assert tree.children[1].children[1].name == "c0.37"
