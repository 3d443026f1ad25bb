"""Selection and variation invariants: limits always hold, randomness comes from the master RNG."""

import random
from collections import Counter
from dataclasses import replace

import pytest

from gpsearch.engine.primitives import Individual, build_pset, parse_expr, within_limits
from gpsearch.engine.space import load_space
from gpsearch.engine.variation import (
    VariationConfig,
    master_rng,
    random_tree,
    rank_key,
    tournament,
    vary,
)
from gpsearch.errors import UserError

SPACE = load_space("prunerzero")
PSET = build_pset(SPACE)


def population(rng, n=12, space=SPACE):
    pop = [random_tree(PSET, space, rng) for _ in range(n)]
    for ind in pop:
        ind.fitness = float(rng.randint(1, 50))
    return pop


def test_tournament_picks_the_best_of_its_draw():
    rng = random.Random(0)
    pop = population(rng)
    best = min(pop, key=rank_key)
    assert tournament(pop, random.Random(1), 200) is best
    picks = Counter(id(tournament(pop, rng, 1)) for _ in range(600))
    assert len(picks) == len(pop)  # size 1: every individual gets picked sometimes
    wins = sum(tournament(pop, rng, 3).fitness <= sorted(p.fitness for p in pop)[5]
               for _ in range(300))
    assert wins > 200  # selection pressure


@pytest.mark.parametrize("max_height,max_size", [(2, 5), (3, 7), (4, 12), (6, 25)])
def test_every_child_respects_the_static_limits(max_height, max_size):
    space = replace(SPACE, init_height=(1, min(2, max_height)), max_height=max_height,
                    max_size=max_size)
    rng = random.Random(max_size)
    pop = [ind for ind in population(rng, 30, space) if within_limits(ind, space)]
    cfg = VariationConfig(p_crossover=0.4, p_mutation=0.6)
    ops = Counter()
    for _ in range(1500):
        child = vary(pop, rng, PSET, space, cfg)
        assert child.height <= max_height and len(child) <= max_size
        assert str(parse_expr(str(child), PSET)) == str(child)
        assert child.fitness is None and all(isinstance(p, str) for p in child.origin["parents"])
        ops[child.origin["op"].replace("_over_limit", "")] += 1
    assert {"crossover", "mut_uniform", "mut_node", "mut_shrink", "mut_insert"} <= set(ops)


def test_over_limit_child_falls_back_to_its_parent():
    parent = parse_expr("mul(W, sqrt(X))", PSET)
    parent.fitness = 1.0
    space = replace(SPACE, max_size=len(parent), max_height=parent.height)
    cfg = VariationConfig(p_crossover=0.0, p_mutation=1.0, mutation_weights={"insert": 1.0})
    child = vary([parent], random.Random(0), PSET, space, cfg)
    assert str(child) == str(parent) and child.origin["op"] == "mut_insert_over_limit"
    assert child is not parent and child.fitness is None


def test_variation_depends_only_on_the_master_rng():
    pop = population(random.Random(3))
    cfg = VariationConfig()

    def children(seed, noise):
        rng = random.Random(seed)
        out = []
        for _ in range(60):
            random.random() if noise else None  # someone else using the global RNG
            out.append(str(vary(pop, rng, PSET, SPACE, cfg)))
        return out

    random.seed(123)
    state = random.getstate()
    a = children(7, False)
    assert random.getstate() == state  # the global RNG is left as it was
    assert children(7, True) == a and children(8, False) != a


def test_master_rng_restores_the_global_state_on_error():
    random.seed(5)
    state, rng = random.getstate(), random.Random(1)
    with pytest.raises(ValueError):
        with master_rng(rng):
            random.random()
            raise ValueError
    assert random.getstate() == state and rng.getstate() != random.Random(1).getstate()


def test_initial_trees_have_the_requested_heights():
    rng = random.Random(4)
    heights = Counter(random_tree(PSET, SPACE, rng).height for _ in range(300))
    lo, hi = SPACE.init_height
    assert set(heights) <= set(range(lo, hi + 1)) and len(heights) > 1


@pytest.mark.parametrize("kwargs", [dict(p_crossover=0.8, p_mutation=0.5), dict(tournament=0),
                                    dict(mutation_weights={"bogus": 1.0}),
                                    dict(mutation_weights={"shrink": 0.0})])
def test_bad_variation_config(kwargs):
    with pytest.raises(UserError):
        VariationConfig(**kwargs)


def test_copy_keeps_nodes_and_fitness():
    ind = parse_expr("add(W, G)", PSET)
    ind.fitness, ind.key = 3.0, "k"
    other = ind.copy()
    assert isinstance(other, Individual) and str(other) == str(ind) and other.fitness == 3.0
    other[0] = PSET.mapping["mul"]
    assert str(ind) == "add(W, G)"
