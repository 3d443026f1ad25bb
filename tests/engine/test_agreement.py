"""Rank agreement between the first and the last stage (pure), against a direct computation."""

import pytest

from gpsearch.engine.agreement import ranks, spearman, stage_agreement


def test_spearman_matches_the_textbook_formula_without_ties():
    a, b = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6], [2.0, 1.0, 5.0, 3.0, 8.0, 0.5]
    n = len(a)
    ra, rb = ranks(a), ranks(b)
    d2 = sum((x - y) ** 2 for x, y in zip(ra, rb))
    assert spearman(a, b) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
    assert spearman(a, a) == pytest.approx(1.0) and spearman(a, [-x for x in a]) == -1.0
    assert ranks([2.0, 1.0, 2.0]) == [1.5, 0.0, 1.5]  # ties share their mean rank
    assert spearman([1, 2], [2, 1]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_stage_agreement_ranks_the_reported_tree_at_the_first_stage():
    rec = lambda *s: {"stages": [{"score": x} for x in s]}  # noqa: E731
    records = {"a": rec(1.0, 3.0), "b": rec(2.0, 1.0), "c": rec(3.0, 2.0), "d": rec(0.5),
               "e": rec(4.0, 4.0), "f": {"fitness": 9.0}}
    a = stage_agreement(records, "b")
    assert a["evaluated"] == 5 and a["reached_last_stage"] == 4 and a["stages"] == 2
    assert a["last_stage_best"] == "b" and a["its_first_stage_rank"] == 3  # d, a, then b
    assert a["tree_first_stage_rank"] == 3
    assert a["spearman"] == pytest.approx(spearman([2.0, 3.0, 1.0, 4.0], [1.0, 2.0, 3.0, 4.0]))
    assert stage_agreement({"a": rec(1.0)}) is None
