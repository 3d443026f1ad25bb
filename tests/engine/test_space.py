"""Search spaces: the YAML files agree with the tree registries; bad files are one-line errors."""

import random

import pytest

from gpsearch.engine.primitives import build_pset, parse_expr
from gpsearch.engine.space import SPACES_DIR, load_space, resolve_space_path
from gpsearch.engine.variation import random_tree
from gpsearch.errors import UserError
from gpsearch.tree import EXTENDED, PRUNERZERO, parse_prefix, to_prefix

REGISTRIES = {"prunerzero": PRUNERZERO, "extended": EXTENDED}


@pytest.mark.parametrize("name", ["prunerzero", "extended"])
def test_space_names_and_arities_match_the_registry(name):
    space = load_space(name)
    reg = REGISTRIES[space.registry]
    for op, arity in space.arities().items():
        assert reg.is_op(op) and reg.op(op).arity == arity, op
    assert set(space.terminals) <= set(reg.terminals)
    # each file is the WHOLE of its registry
    assert set(space.arities()) == {o.name for o in reg.operators()}
    assert set(space.terminals) == set(reg.terminals)


def test_prunerzero_space_is_pruner_zeros():
    space = load_space(SPACES_DIR / "prunerzero.yaml")
    assert space.terminals == ("W", "X", "G")
    assert set(space.unary) == {"sqr", "neg", "abs", "log", "exp", "sqrt", "tanh", "pow", "skp",
                                "mms", "zsn"}
    assert set(space.binary) == {"add", "sub", "mul", "div"}
    assert space.init_height[0] <= space.init_height[1] <= space.max_height


@pytest.mark.parametrize("name", ["prunerzero", "extended"])
def test_individuals_print_what_the_tree_parser_reads(name):
    space = load_space(name)
    pset, rng = build_pset(space), random.Random(0)
    reg = REGISTRIES[space.registry]
    for _ in range(300):
        ind = random_tree(pset, space, rng)
        text = str(ind)
        assert to_prefix(parse_prefix(text, reg)) == text
        assert str(parse_expr(text, pset)) == text


BAD = [
    ("name: x\nregistry: prunerzero\n", "missing"),
    ("[1, 2]", "mapping"),
    ("{{{", "yaml"),
    ("name: x\nregistry: other\nterminals: [W]\nunary: [abs]\nbinary: []\ninit_height: [1, 2]\n"
     "max_height: 4\nmax_size: 10\n", "registry"),
    ("name: x\nregistry: prunerzero\nterminals: [W, W]\nunary: [abs]\nbinary: []\n"
     "init_height: [1, 2]\nmax_height: 4\nmax_size: 10\n", "twice"),
    ("name: x\nregistry: prunerzero\nterminals: [W]\nunary: [abs]\nbinary: []\n"
     "init_height: [3, 2]\nmax_height: 4\nmax_size: 10\n", "init_height"),
    ("name: x\nregistry: prunerzero\nterminals: [W]\nunary: [abs]\nbinary: []\n"
     "init_height: [1, 2]\nmax_height: 40\nmax_size: 10\n", "max_height"),
    ("name: x\nregistry: prunerzero\nterminals: [W]\nunary: [abs]\nbinary: []\n"
     "init_height: [1, 2]\nmax_height: 4\nmax_size: 10\nextra: 1\n", "unknown key"),
    ("name: x\nregistry: prunerzero\nterminals: ['W(']\nunary: [abs]\nbinary: []\n"
     "init_height: [1, 2]\nmax_height: 4\nmax_size: 10\n", "not a valid name"),
    ("name: x\nregistry: prunerzero\nterminals: [W]\nunary: []\nbinary: []\n"
     "init_height: [1, 2]\nmax_height: 4\nmax_size: 10\n", "no operators"),
]


@pytest.mark.parametrize("text,needle", BAD)
def test_bad_space_files(tmp_path, text, needle):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_space(path)
    assert needle in str(e.value).lower() and "\n" not in str(e.value)


def test_unknown_space_name_lists_the_known_ones():
    with pytest.raises(UserError, match="prunerzero"):
        resolve_space_path("no_such_space")
