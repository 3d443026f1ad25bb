"""Constant tuning: slots, rewriting and the coordinate descent on a known optimum."""

from gpsearch.engine.tune import constant_slots, tune_constants, with_constant
from gpsearch.tree import EXTENDED, parse_prefix, to_prefix


def test_slots_and_rewrite_keep_the_tree():
    expr = "add(mul(W, powr(X, c0.5)), mul(c2, G))"
    slots = constant_slots(expr)
    assert [v for _, v in slots] == [0.5, 2.0]
    out = with_constant(expr, slots[0][0], 0.37)
    assert out == "add(mul(W, powr(X, c0.37)), mul(c2, G))"
    assert to_prefix(parse_prefix(out, EXTENDED)) == out
    assert constant_slots("mul(W, sqrt(X))") == []


def test_coordinate_descent_moves_towards_the_optimum_and_never_gets_worse():
    calls = []

    def score(exprs):  # optimum: exponent 0.3, weight 4
        calls.append(len(exprs))
        out = []
        for e in exprs:
            a, b = (v for _, v in constant_slots(e))
            out.append((a - 0.3) ** 2 + (b - 4.0) ** 2)
        return out

    res = tune_constants("add(powr(X, c0.5), mul(c2, W))", score, rounds=3)
    assert res["score"] < res["start_score"]
    a, b = (v for _, v in constant_slots(res["expr"]))
    assert abs(a - 0.3) < 0.1 and abs(b - 4.0) < 0.5
    assert res["evaluated"] == sum(calls)
    assert all(h2["score"] <= h1["score"] for h1, h2 in zip(res["history"], res["history"][1:]))
