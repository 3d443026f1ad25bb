import pytest

from gpsearch.errors import UserError
from gpsearch.methods.tiers_schedule import (
    fractions_for,
    load_schedule,
    next_shares,
    parse_schedule,
)

HEADER = "iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs\n"


def test_example_schedule_implied_sparsity():
    steps = load_schedule("schedules/tiers_example.csv")
    assert [(s.dense, s.mid_2_4, s.topk) for s in steps] == [
        (0.9, 0.1, 0.0), (0.8, 0.1, 0.1), (0.65, 0.2, 0.15), (0.5, 0.3, 0.2), (0.35, 0.45, 0.2)]
    assert steps[0].epochs == 2 and steps[-1].epochs == 3
    # 2:4 zeroes half a block, TOPK keeps 10 of 256: 0.5 * mid + (246/256) * topk
    expected = [0.5 * m + (246 / 256) * t
                for m, t in ((.1, 0), (.1, .1), (.2, .15), (.3, .2), (.45, .2))]
    got = [s.sparsity(16, 10) for s in steps]
    assert all(abs(a - b) < 1e-12 for a, b in zip(got, expected))
    assert [round(100 * g) for g in got] == [5, 15, 24, 34, 42]  # "about 5, 14, 24, 34, 42%"
    assert abs(got[1] - 0.14) < 0.01


def test_fractions_follow_the_shares():
    steps = load_schedule("schedules/tiers_example.csv")
    prev = (1.0, 0.0, 0.0)
    for s in steps:
        d, m, t = next_shares(prev, s.dense_to_2_4, s.mid_2_4_to_topk)
        assert abs(d - s.dense) < 1e-5 and abs(m - s.mid_2_4) < 1e-5 and abs(t - s.topk) < 1e-5
        prev = (s.dense, s.mid_2_4, s.topk)
    # iteration 2 by hand: 0.1 of 0.9 dense -> 0.1 moves; half of the 0.2 mid -> 0.1 to topk
    assert fractions_for([(0.9, 0.1, 0.0), (0.8, 0.1, 0.1)])[1] == pytest.approx((1 / 9, 0.5))


def test_whitespace_and_blank_lines_are_fine():
    steps = parse_schedule(HEADER.replace(",", " , ") + "\n 1 , 0.5 , 0.5 , 0 , 0.5 , 0 , 1 \n\n")
    assert steps[0].mid_2_4 == 0.5 and steps[0].epochs == 1


@pytest.mark.parametrize("body,needle", [
    ("1,0.9,0.1,0,0.1,0,2\n3,0.8,0.1,0.1,0.111111,0.5,2\n", "numbered"),
    ("1,0.9,0.2,0,0.1,0,2\n", "not 1"),
    ("1,0.9,0.1,0,0.3,0,2\n", "applied to the previous shares"),
    ("1,0.9,0.1,0,0.1,0,-1\n", "epochs"),
    ("1,0.9,0.1,0,0.1,0,two\n", "not a valid int"),
    ("1,0.9,0.1,0,0.1,0\n", "columns"),
    ("1,1.2,-0.2,0,0,0,1\n", "[0, 1]"),
    ("1,0.5,0.5,0,0.5,0,1\n2,0.6,0.4,0,0,0,1\n", "one-way"),
])
def test_bad_schedules_are_rejected(body, needle):
    with pytest.raises(UserError, match=None) as e:
        parse_schedule(HEADER + body)
    assert needle in str(e.value)


def test_header_and_missing_file():
    with pytest.raises(UserError, match="header"):
        parse_schedule("iteration,dense\n1,1\n")
    with pytest.raises(UserError, match="no rows"):
        parse_schedule(HEADER)
    with pytest.raises(UserError, match="not found"):
        load_schedule("/nonexistent/schedule.csv")
