"""The lead-vs-noise verdict (pure) and its by-hand definition."""

import pytest

from gpsearch.jobs.search.lead import verdict


def test_a_lead_counts_only_above_the_noise():
    hand = {"wanda_tree": 39.07, "gblm": 38.88, "ria_sqrt": 38.89}
    v = verdict(38.78, hand, noise=0.0033)
    assert v["strongest_hand"] == "gblm"
    assert v["margin"] == pytest.approx(1 - 38.78 / 38.88)  # 0.26% < 0.33%
    assert not v["beyond_noise"] and v["verdict"].startswith("within the noise")
    assert v["margins"]["wanda_tree"] == pytest.approx(1 - 38.78 / 39.07)
    v = verdict(38.0, hand, noise=0.0033)  # 2.3% ahead
    assert v["beyond_noise"] and v["verdict"] == "beyond the noise"
    v = verdict(40.0, hand, noise=0.0033)
    assert not v["beyond_noise"] and v["verdict"].startswith("worse")


def test_ties_between_hand_trees_break_by_name():
    v = verdict(10.0, {"b": 11.0, "a": 11.0}, noise=0.001)
    assert v["strongest_hand"] == "a"
