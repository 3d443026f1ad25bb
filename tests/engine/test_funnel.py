"""The funnel's selection rule on made-up numbers: a lead counts only beyond each condition's
noise, under a majority of the conditions, against the strongest hand tree and the tree's seed."""

import math

import pytest

from gpsearch.engine.funnel import compare, condition_noise, margin, mean_log_ppl, needed, select

CONDS = ["sparsity=0.6", "sparsity=0.7", "pattern=2:4", "seed=1", "text=held-apart"]


def tree(name, kind, ppl, size=5, seed=None):
    vals = ppl if isinstance(ppl, list) else [ppl] * len(CONDS)
    return {"name": name, "kind": kind, "size": size, "seed": seed, "ppl": dict(zip(CONDS, vals))}


def noise(x=0.01):
    return {c: x for c in CONDS}


def test_margin_noise_and_majority_arithmetic():
    assert margin(99.0, 100.0) == pytest.approx(0.01)
    assert margin(101.0, 100.0) == pytest.approx(-0.01)
    assert margin(math.inf, 100.0) == -math.inf and margin(100.0, None) == 1.0
    assert margin(math.nan, math.inf) == 0.0
    # Wanda's PPL 100 with seed 0, 101.5 and 99 with two other seeds: 1.5%
    assert condition_noise(100.0, [101.5, 99.0]) == pytest.approx(0.015)
    assert condition_noise(100.0, [100.01]) == pytest.approx(1e-3)  # the floor: the ranking grid
    assert condition_noise(100.0, [100.01], floor=0.0) == pytest.approx(1e-4)
    assert condition_noise(100.0, [math.inf]) == math.inf
    assert (needed(5), needed(4), needed(1), needed(6, 2 / 3)) == (3, 3, 1, 5)
    with pytest.raises(ValueError):
        needed(5, 0.4)
    with pytest.raises(ValueError):
        condition_noise(100.0, [101.0], floor=-1)


def test_the_seed_is_reported_when_the_lead_over_it_is_within_noise():
    fins = [tree("gblm", "hand", 110.0), tree("seed1", "seed", 100.0, size=7),
            tree("hof1", "searched", 99.7, size=12, seed="seed1")]  # 0.3% < 1% noise
    out = select(fins, CONDS, noise())
    assert out["reported"] == "seed1" and out["kind"] == "seed"
    assert out["verdict"].startswith("no tree beat the seed beyond noise")
    hof = out["decisions"][-1]
    assert hof["name"] == "hof1" and hof["replaced"] is None
    assert [(r["against"], r["wins"]) for r in hof["against"]] == [("seed1", 0)]
    # the same tree 3% ahead of its seed everywhere wins
    fins[2] = tree("hof1", "searched", 97.0, size=12, seed="seed1")
    out = select(fins, CONDS, noise())
    assert out["reported"] == "hof1" and out["verdict"].startswith("hof1 is reported")


def test_the_candidate_wins_only_beyond_noise_under_a_majority_of_conditions():
    hand, seed = tree("gblm", "hand", 100.0), tree("seed1", "seed", 100.5)  # seed within noise
    three = tree("hof1", "searched", [97.0, 97.0, 97.0, 101.0, 101.0], size=9, seed="seed1")
    out = select([hand, seed, three], CONDS, noise())
    assert out["reported"] == "hof1"  # 3 of 5 beyond noise against gblm and against seed1
    d = out["decisions"][-1]
    assert [r["wins"] for r in d["against"]] == [3, 3] and d["replaced"] == "gblm"
    two = tree("hof1", "searched", [97.0, 97.0, 101.0, 101.0, 101.0], size=9, seed="seed1")
    out = select([hand, seed, two], CONDS, noise())
    assert out["reported"] == "gblm"  # 2 of 5 is no majority
    assert "no tree beat the hand tree gblm beyond noise" in out["verdict"]
    assert out["margins"]["hof1"]["sparsity=0.6"] == pytest.approx(0.03)


def test_each_condition_has_its_own_noise():
    fins = [tree("gblm", "hand", 100.0), tree("hof1", "searched", 98.0, seed=None)]  # 2% lead
    quiet = noise(0.01)
    assert select(fins, CONDS, quiet)["reported"] == "hof1"
    loud = {**quiet, **{c: 0.03 for c in CONDS[:3]}}  # 3 conditions noisier than the lead
    out = select(fins, CONDS, loud)
    assert out["reported"] == "gblm"
    assert out["decisions"][0]["against"][0]["won"] == CONDS[3:]


def test_the_hand_tree_is_reported_when_it_beats_seed_and_candidate():
    fins = [tree("wanda", "hand", 104.0), tree("gblm", "hand", 95.0, size=7),
            tree("seed1", "seed", 100.0), tree("hof1", "searched", 99.0, size=11, seed="seed1")]
    out = select(fins, CONDS, noise())
    assert out["strongest_hand"] == "gblm" and out["reported"] == "gblm"
    assert out["kind"] == "hand" and "no tree beat the hand tree gblm" in out["verdict"]
    assert [d["replaced"] for d in out["decisions"]] == [None, None]
    assert out["margins"]["wanda"]["seed=1"] == pytest.approx(1 - 104 / 95)


def test_beating_the_hand_tree_is_not_enough_without_beating_the_seed():
    fins = [tree("gblm", "hand", 100.0), tree("seed1", "seed", 99.5),  # within noise of gblm
            tree("hof1", "searched", 98.8, size=12, seed="seed1")]  # 1.2% over gblm, 0.7% seed
    out = select(fins, CONDS, noise())
    assert out["reported"] == "gblm"
    assert [(r["against"], r["beats"]) for r in out["decisions"][-1]["against"]] == [
        ("gblm", True), ("seed1", False)]
    assert "no tree beat both its seed and the hand tree gblm" in out["verdict"]


def test_a_bigger_tree_must_beat_a_smaller_winner_beyond_noise():
    fins = [tree("gblm", "hand", 100.0), tree("hof1", "searched", 96.0, size=15),
            tree("hof2", "searched", 97.0, size=9)]  # hof1 ranks first but is bigger
    out = select(fins, CONDS, noise())
    assert [d["name"] for d in out["decisions"]] == ["hof2", "hof1"]  # simplest first
    assert out["reported"] == "hof1"  # 1.03% ahead of hof2: beyond 1%
    out = select(fins, CONDS, noise(0.02))
    assert out["reported"] == "hof2"  # within 2%: the smaller tree stays


def test_a_failed_score_loses_that_condition():
    fins = [tree("gblm", "hand", 100.0),
            tree("hof1", "searched", [90.0, math.inf, math.inf, math.inf, 90.0])]
    out = select(fins, CONDS, noise())
    assert out["reported"] == "gblm" and out["decisions"][0]["against"][0]["wins"] == 2
    assert mean_log_ppl(fins[1], CONDS) == math.inf
    assert compare(fins[0], fins[1], CONDS, noise())["wins"] == 3


def test_bad_input_is_a_programming_error():
    with pytest.raises(ValueError, match="hand tree"):
        select([tree("seed1", "seed", 1.0)], CONDS, noise())
    with pytest.raises(ValueError, match="no perplexity"):
        select([tree("gblm", "hand", 1.0)], CONDS + ["nsamples=32"], noise())
    with pytest.raises(ValueError, match="distinct"):
        select([tree("a", "hand", 1.0), tree("a", "seed", 1.0)], CONDS, noise())
    with pytest.raises(ValueError, match="kind"):
        select([tree("gblm", "hand", 1.0), tree("x", "other", 1.0)], CONDS, noise())


def test_no_searched_tree_and_no_conditions():
    fins = [tree("gblm", "hand", 100.0, size=7), tree("wanda", "hand", 100.0, size=4)]
    out = select(fins, [], {})
    assert out["reported"] == "wanda"  # no evidence: the simplest hand tree
    assert out["verdict"].startswith("no searched tree among the finalists")
