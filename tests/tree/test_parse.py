"""Prefix and JSON formats, load/save, limits, and hostile input (always a one-line TreeError)."""

import dataclasses
import json
import random
import time

import pytest

from gpsearch.errors import TreeError
from gpsearch.tree import (
    EXTENDED,
    MAX_HEIGHT,
    MAX_SIZE,
    PRUNERZERO,
    TREES_DIR,
    WANDA,
    Node,
    from_json,
    load_tree,
    parse_prefix,
    registry_for,
    save_tree,
    terminals_used,
    to_json,
    to_prefix,
    validate,
)

PUBLISHED = {"data": "mul",
             "left": {"data": "abs",
                      "left": {"data": "mul", "left": {"data": "W"}, "right": {"data": "W"}}},
             "right": {"data": "mms", "left": {"data": "G"}}}


def random_tree(rng, reg, depth):
    if depth == 0 or rng.random() < 0.2:
        return Node(rng.choice(reg.terminals))
    o = rng.choice(reg.operators())
    return Node(o.name, tuple(random_tree(rng, reg, depth - 1) for _ in range(o.arity)))


def chain(n, leaf="W"):
    node = Node(leaf)
    for _ in range(n):
        node = Node("abs", (node,))
    return node


def full_binary(height):
    return (Node("W") if height == 0
            else Node("add", (full_binary(height - 1), full_binary(height - 1))))


def one_line_tree_error(fn, *args):
    with pytest.raises(TreeError) as info:
        fn(*args)
    assert "\n" not in str(info.value) and str(info.value)
    return str(info.value)


def test_node_basics():
    tree = parse_prefix("mul(abs(W), sqrt(X))")
    assert tree == Node("mul", (Node("abs", (Node("W"),)), Node("sqrt", (Node("X"),))))
    assert tree.size() == 5 and tree.height() == 2 and Node("W").height() == 0
    assert hash(tree) == hash(parse_prefix(" mul( abs(W),sqrt( X ) ) "))
    assert len({tree, parse_prefix("mul(abs(W), sqrt(X))"), Node("W")}) == 2
    assert terminals_used(tree) == {"W", "X"} and str(tree) == "mul(abs(W), sqrt(X))"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.name = "add"
    for bad in [(5,), ("abs", [Node("W")]), ("abs", ("W",))]:
        one_line_tree_error(Node, *bad)


def test_prefix_and_json_round_trips_on_random_trees():
    rng = random.Random(1234)
    seen = set()
    for reg in (PRUNERZERO, EXTENDED):
        for _ in range(400):
            tree = random_tree(rng, reg, rng.randint(0, 7))
            text = to_prefix(tree)
            seen.add(text)
            assert parse_prefix(text, reg) == tree
            assert parse_prefix(text.replace(", ", " ,\n\t"), reg) == tree  # whitespace tolerant
            obj = json.loads(json.dumps(to_json(tree)))
            assert from_json(obj, reg) == tree
            assert to_json(from_json(obj, reg)) == obj
    assert len(seen) > 500  # the generator really varies


def test_canonical_text_is_deap_style():
    tree = Node("add", (Node("mul", (Node("W"), Node("sqrt", (Node("X"),)))), Node("c0.5")))
    assert to_prefix(tree) == "add(mul(W, sqrt(X)), c0.5)"
    assert parse_prefix("add(mul(W,sqrt(X)),c0.5)", EXTENDED) == tree


def test_published_tree_loads():
    tree = from_json(PUBLISHED)
    assert to_prefix(tree) == "mul(abs(mul(W, W)), mms(G))"
    assert to_json(tree) == PUBLISHED
    assert load_tree("pruner_zero") == tree


@pytest.mark.parametrize("name, expr", [
    ("magnitude", "W"), ("wanda", "mul(W, sqrt(X))"),
    ("pruner_zero", "mul(abs(mul(W, W)), mms(G))"),
    ("gblm", "add(mul(W, sqrt(X)), mul(W, G))"), ("ria", "mul(add(coln(W), rown(W)), qrt(X))")])
def test_known_tree_files(name, expr):
    tree = load_tree(name)
    assert to_prefix(tree) == expr
    assert load_tree(str(TREES_DIR / f"{name}.json")) == tree == load_tree(expr)
    assert registry_for(tree) is (EXTENDED if name == "ria" else PRUNERZERO)


def test_load_tree_picks_the_registry():
    one_line_tree_error(load_tree, "ria", PRUNERZERO)
    one_line_tree_error(load_tree, "mul(W, H)", PRUNERZERO)
    assert load_tree("mul(W, H)") == Node("mul", (Node("W"), Node("H")))
    assert load_tree("  W ") == Node("W")
    msg = one_line_tree_error(load_tree, "wand")
    assert "wanda" in msg and "not a terminal" in msg


def test_save_tree_round_trip(tmp_path):
    rng = random.Random(7)
    for i in range(30):
        tree = random_tree(rng, EXTENDED, 5)
        path = tmp_path / f"t{i}.json"
        save_tree(tree, path)
        assert load_tree(str(path)) == tree and load_tree(path) == tree
        obj = json.loads(path.read_text())
        assert obj == to_json(tree)
    assert path.read_text().startswith("{\n  ") and path.read_text().endswith("}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"t{i}.json" for i in range(30))
    one_line_tree_error(save_tree, Node("evil"), tmp_path / "evil.json")
    assert not (tmp_path / "evil.json").exists()


def test_limits():
    assert (MAX_HEIGHT, MAX_SIZE) == (17, 200)  # DEAP's classic height limit
    assert parse_prefix("abs(" * 17 + "W" + ")" * 17).height() == 17
    one_line_tree_error(parse_prefix, "abs(" * 18 + "W" + ")" * 18)
    assert validate(chain(MAX_HEIGHT)) == chain(MAX_HEIGHT)
    assert "deeper" in one_line_tree_error(validate, chain(MAX_HEIGHT + 1))
    assert parse_prefix(to_prefix(chain(MAX_HEIGHT))) == chain(MAX_HEIGHT)
    assert "deeper" in one_line_tree_error(parse_prefix, to_prefix(chain(MAX_HEIGHT + 1)))
    assert from_json(to_json(chain(MAX_HEIGHT))) == chain(MAX_HEIGHT)
    assert "deeper" in one_line_tree_error(from_json, to_json(chain(MAX_HEIGHT + 1)))
    big = full_binary(7)  # 255 nodes, height 7
    assert big.size() == 255 > MAX_SIZE
    for fn, arg in [(validate, big), (parse_prefix, to_prefix(big)), (from_json, to_json(big))]:
        assert "more than" in one_line_tree_error(fn, arg)
    assert full_binary(6).size() < MAX_SIZE and validate(full_binary(6))


def test_deep_trees_never_recurse():
    deep = chain(100_000)  # built by hand: measured and refused iteratively
    assert deep.height() == 100_000 and "deeper" in one_line_tree_error(validate, deep)
    obj = {"data": "W"}
    for _ in range(100_000):
        obj = {"data": "abs", "left": obj}
    assert "deeper" in one_line_tree_error(from_json, obj)
    cyclic = {"data": "abs"}
    cyclic["left"] = cyclic
    one_line_tree_error(from_json, cyclic)
    one_line_tree_error(parse_prefix, "abs(" * 100_000 + "W" + ")" * 100_000)


@pytest.mark.parametrize("expr", [
    "__import__('os').system('x')", "mul(W)", "mul(W, X, G)", "W W", "abs(W", "abs(W))", "", "   ",
    "mul(W,, X)", "mul(W, X,)", "mul(W X)", "os.system(W)", "lambda", "W()", "abs()", "(W)", "W(X)",
    "sqrt(X); rm", "1+2", "abs(W)\x00", "exec('x')", "__class__", "H", "rown(W)", "c2", "abs",
    "mul(abs(W), sqrt(X)) extra", "abs(W)(X)", ",W", "W,", ")", "ab\u00e7(W)", "{\"data\": \"W\"}",
    None, 5, b"W", ["W"]])
def test_hostile_prefix_is_refused(expr):
    one_line_tree_error(parse_prefix, expr)


def test_long_expression_is_refused_quickly():
    one_line_tree_error(parse_prefix, " " * (2 << 20) + "W")
    one_line_tree_error(parse_prefix, "add(W, " * 150 + "W" + ")" * 150)


HOSTILE_JSON = [
    "[1, 2]", "[]", "null", "3", "1.5", "true", '"W"', "{}", '{"data": 5}', '{"data": true}',
    '{"data": null}', '{"data": ["W"]}', '{"data": {"data": "W"}}', '{"left": {"data": "W"}}',
    '{"data": "mul", "left": {"data": "W"}}',
    '{"data": "abs", "left": {"data": "W"}, "right": {"data": "W"}}',
    '{"data": "W", "left": {"data": "X"}}', '{"data": "W", "evil": 1}',
    '{"data": "W", "Data": "X"}',
    '{"data": "__import__"}', '{"data": "abs", "left": [1]}', '{"data": "abs", "left": null}',
    '{"data": "abs", "left": "W"}', '{"data": "sqrt", "right": {"data": "W"}}', "{not json",
    '{"data": "W"} trailing', '{"data": "W", "data": "X"}', '{"data": "abs", "left": {"data": "W"}',
    '{"data": "W"' + "}" * 5, '{"data": "' + "9" * 5000 + '"}', '{"data": ' + "9" * 5000 + "}",
    '{"data": NaN}', '{"data": "H"}' + " ", '{"data": "mul(W, X)"}', "", "   ", "\ufeff",
    '{"data": "abs", "left": {"data": "W", "left": {"data": "X"}}}', '{"data": "W\\u0000"}',
]


@pytest.mark.parametrize("content", HOSTILE_JSON)
def test_hostile_tree_files_are_refused(tmp_path, content):
    f = tmp_path / "t.json"
    f.write_text(content, encoding="utf-8")
    registry = PRUNERZERO if '"H"' in content else None
    with pytest.raises(TreeError) as info:
        load_tree(str(f), registry)
    assert "\n" not in str(info.value)


def test_hostile_decoded_objects_are_refused():
    for obj in [None, 1, 2.5, True, "W", ["W"], (), {"data": "W", 1: 2}, {"data": b"W"},
                {"data": "W", None: 1}]:
        one_line_tree_error(from_json, obj)


def test_bad_bytes_and_big_files(tmp_path):
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"data": "\xff\xfe"}')
    assert "UTF-8" in one_line_tree_error(load_tree, str(binary))
    big = tmp_path / "big.json"
    big.write_text(" " * (1 << 20) + '{"data": "W"}')
    assert "larger" in one_line_tree_error(load_tree, str(big))
    huge = tmp_path / "huge.json"  # sparse 4 GiB: refused from its size, never read
    with open(huge, "wb") as f:
        f.truncate(4 << 30)
    start = time.perf_counter()
    assert "larger" in one_line_tree_error(load_tree, str(huge))
    assert time.perf_counter() - start < 1.0
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(PUBLISHED).encode())
    assert load_tree(str(bom)) == from_json(PUBLISHED)


def test_deep_and_tricky_json_files(tmp_path):
    deep = tmp_path / "deep.json"  # 40000 levels in under 1 MB: refused by depth, before decoding
    deep.write_text('{"data":"abs","left":' * 40_000 + '{"data":"W"}' + "}" * 40_000)
    assert deep.stat().st_size < (1 << 20)
    assert "deeper" in one_line_tree_error(load_tree, str(deep))
    deeper = tmp_path / "deeper.json"
    deeper.write_text('{"data": "abs", "left": ' * 100_000 + '{"data": "W"}' + "}" * 100_000)
    one_line_tree_error(load_tree, str(deeper))
    lists = tmp_path / "lists.json"
    lists.write_text("[" * 500_000 + "]" * 500_000)
    one_line_tree_error(load_tree, str(lists))
    quotes = tmp_path / "quotes.json"  # an unterminated string full of escapes: linear scan
    quotes.write_text('"\\"' * 300_000)
    start = time.perf_counter()
    one_line_tree_error(load_tree, str(quotes))
    assert time.perf_counter() - start < 5.0
    brackets_in_strings = tmp_path / "strings.json"
    brackets_in_strings.write_text('{"data": "W", "x": "' + "[{" * 1000 + '"}')
    assert "unknown key" in one_line_tree_error(load_tree, str(brackets_in_strings))


def test_missing_and_odd_paths(tmp_path):
    assert "not found" in one_line_tree_error(load_tree, str(tmp_path / "none.json"))
    assert "not found" in one_line_tree_error(load_tree, "no/such/tree")
    (tmp_path / "dir.json").mkdir()
    one_line_tree_error(load_tree, str(tmp_path / "dir.json"))
    for spec in [None, 3, ["W"], ""]:
        one_line_tree_error(load_tree, spec)
    odd = tmp_path / "line\nbreak.json"
    odd.write_text("{oops")
    assert "\\n" in one_line_tree_error(load_tree, str(odd))  # shown quoted, on one line
    assert "cannot write" in one_line_tree_error(save_tree, Node("W"), tmp_path / "no" / "dir.json")


def test_the_wanda_constant_is_trees_wanda_json():
    assert to_prefix(load_tree("wanda")) == WANDA
