import json
import random

import pytest
import torch

from gpsearch.errors import TreeError
from gpsearch.tree import (
    EXTENDED,
    PRUNERZERO,
    Node,
    Operator,
    Registry,
    check_score,
    evaluate,
    from_json,
    load_tree,
    parse_prefix,
    to_json,
    to_prefix,
)

PUBLISHED = {"data": "mul",
             "left": {"data": "abs",
                      "left": {"data": "mul", "left": {"data": "W"}, "right": {"data": "W"}}},
             "right": {"data": "mms", "left": {"data": "G"}}}


def terms(seed=0, out=6, inp=10):
    g = torch.Generator().manual_seed(seed)
    return {"W": torch.randn(out, inp, generator=g).abs(), "X": torch.rand(1, inp, generator=g) * 5,
            "G": torch.rand(out, inp, generator=g), "H": torch.rand(1, inp, generator=g) + 0.1,
            "S": torch.rand(1, inp, generator=g)}


def random_tree(rng, reg, depth):
    if depth == 0 or rng.random() < 0.25:
        return Node(rng.choice(reg.terminals))
    op = rng.choice(reg.operators())
    return Node(op.name, tuple(random_tree(rng, reg, depth - 1) for _ in range(op.arity)))


def ev(expr, t=None, dtype=torch.float64):
    return evaluate(parse_prefix(expr, EXTENDED), t or terms(), EXTENDED, dtype)


def test_operator_semantics():
    t = {"W": torch.tensor([[0.0, -2.0, 3.0]]), "X": torch.tensor([[1.0, 1.0, 1.0]]),
         "G": torch.tensor([[200.0, 0.0, -1.0]])}
    assert torch.allclose(ev("log(W)", t),
                          torch.log(torch.tensor([[0.001, 2.001, 3.001]], dtype=torch.float64)))
    assert (torch.isfinite(ev("exp(G)", t)).all()
            and float(ev("exp(G)", t)[0, 0]) == pytest.approx(torch.e ** 100, rel=1e-9))
    assert torch.equal(ev("sqrt(W)", t),
                       torch.tensor([[0.0, 2 ** 0.5, 3 ** 0.5]], dtype=torch.float64))
    # constant -> 0, not NaN
    assert torch.equal(ev("mms(X)", t), torch.zeros(1, 3, dtype=torch.float64))
    assert torch.equal(ev("zsn(X)", t), torch.zeros(1, 3, dtype=torch.float64))
    assert torch.allclose(ev("div(W, G)", t), t["W"].double() / torch.linalg.norm(t["G"].double()))
    assert (torch.equal(ev("pow(W)", t), ev("sqr(W)", t))
            and torch.equal(ev("skp(W)", t), t["W"].double()))
    m = ev("mms(G)", t)
    assert float(m.min()) == 0.0 and float(m.max()) == 1.0


def test_float32_first_and_float64_when_float32_overflows():
    t = {"W": torch.tensor([[1.0, 2.0]]), "G": torch.tensor([[95.0, 99.0]])}
    assert ev("mul(W, W)", t, None).dtype == torch.float32
    out = ev("exp(G)", t, None)  # e^99 overflows float32
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.allclose(ev("mul(W, sqrt(G))", t, None).double(), ev("mul(W, sqrt(G))", t),
                          rtol=1e-6)


def test_bad_operators_are_refused_at_registration():
    reg = Registry("t", ("W",))
    with pytest.raises(ValueError, match="non-finite"):
        reg.register(Operator("inv", 1, lambda x: 1.0 / x))  # inf on zeros
    with pytest.raises(ValueError, match="arity"):
        reg.register(Operator("bad", 2, lambda x: x))
    with pytest.raises(ValueError, match="shape"):
        reg.register(Operator("flat", 1, lambda x: x.reshape(-1)))
    reg.register(Operator("ok", 1, torch.tanh))
    assert reg.is_op("ok")


def test_prefix_and_json_round_trips_on_random_trees():
    rng = random.Random(0)
    for reg in (PRUNERZERO, EXTENDED):
        for _ in range(300):
            tree = random_tree(rng, reg, rng.randint(0, 6))
            assert parse_prefix(to_prefix(tree), reg) == tree
            assert from_json(json.loads(json.dumps(to_json(tree))), reg) == tree


def test_published_tree_formula():
    tree = from_json(PUBLISHED)
    assert to_prefix(tree) == "mul(abs(mul(W, W)), mms(G))"
    t = terms(3)
    g = t["G"].double()
    expected = (t["W"].double() * t["W"].double()).abs() * (g - g.min()) / (g.max() - g.min())
    assert torch.allclose(evaluate(tree, t).double(), expected, rtol=1e-5)
    assert load_tree("pruner_zero") == tree


def test_known_trees():
    t = terms(4)
    W, X = t["W"].double(), t["X"].double()
    assert torch.allclose(evaluate(load_tree("wanda"), t).double(), W * X.sqrt(), rtol=1e-5)
    assert torch.allclose(evaluate(load_tree("gblm"), t).double(),
                          W * X.sqrt() + W * t["G"].double(), rtol=1e-5)
    ria = (W / W.sum(dim=0, keepdim=True) + W / W.sum(dim=1, keepdim=True)) * X.sqrt().sqrt()
    assert torch.allclose(evaluate(load_tree("ria"), t, EXTENDED).double(), ria, rtol=1e-5)
    assert load_tree("magnitude") == Node("W")


@pytest.mark.parametrize("content", [
    "[1, 2]", "null", "3", '"W"', "{}", '{"data": 5}', '{"data": "mul", "left": {"data": "W"}}',
    '{"data": "abs", "left": {"data": "W"}, "right": {"data": "W"}}',
    '{"data": "W", "left": {"data": "X"}}', '{"data": "W", "evil": 1}', '{"data": "__import__"}',
    '{"data": "abs", "left": [1]}', "{not json", '{"data": "sqrt", "right": {"data": "W"}}',
])
def test_hostile_tree_files_are_rejected(tmp_path, content):
    f = tmp_path / "t.json"
    f.write_text(content)
    with pytest.raises(TreeError):
        load_tree(str(f))


def test_hostile_deep_big_and_binary_files(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"data": "abs", "left": ' * 100000 + '{"data": "W"}' + "}" * 100000)
    with pytest.raises(TreeError):
        load_tree(str(deep))
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20) + '{"data": "W"}')
    with pytest.raises(TreeError, match="larger"):
        load_tree(str(big))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(TreeError):
        load_tree(str(binary))
    chain = "abs(" * 18 + "W" + ")" * 18
    with pytest.raises(TreeError, match="deeper"):
        parse_prefix(chain)
    wide = "add(" * 16 + "W" + ", W)" * 16
    parse_prefix(wide)


@pytest.mark.parametrize("expr", ["__import__('os').system('x')", "mul(W)", "mul(W, X, G)", "W W",
                                  "abs(W", "abs(W))", "", "mul(W,, X)", "os.system(W)", "lambda"])
def test_hostile_prefix_strings(expr):
    with pytest.raises(TreeError):
        parse_prefix(expr)


def test_check_score():
    shape = (4, 6)
    assert check_score(torch.arange(6.0).view(1, 6), shape).shape == shape
    with pytest.raises(TreeError, match="constant"):
        check_score(torch.ones(4, 6), shape)
    with pytest.raises(TreeError, match="constant"):
        check_score(torch.tensor(3.0), shape)
    with pytest.raises(TreeError, match="NaN"):
        check_score(torch.tensor([[float("nan")] * 6] * 4), shape)
    with pytest.raises(TreeError, match="shape"):
        check_score(torch.ones(5, 1), shape)
    with pytest.raises(TreeError, match="not available"):
        evaluate(parse_prefix("H", EXTENDED), {"W": torch.ones(2, 2)}, EXTENDED)
