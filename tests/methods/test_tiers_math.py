import pytest
import torch

from gpsearch.errors import UserError
from gpsearch.methods.tiers_math import (
    DENSE,
    MID_2_4,
    TOPK,
    block_scores,
    blocks,
    demote_iteration,
    mask_2_4,
    mask_topk,
    new_tiers,
    tier_mask,
    tier_shares,
    unblocks,
)
from gpsearch.methods.tiers_schedule import load_schedule


def test_block_scores_match_a_loop_over_blocks():
    torch.manual_seed(0)
    s = torch.rand(32, 48)
    keep = torch.rand(32, 48) > 0.3
    got = block_scores(s, keep, 8)
    assert got.shape == (4, 6)
    for i in range(4):
        for j in range(6):
            blk = s[i * 8:(i + 1) * 8, j * 8:(j + 1) * 8]
            k = keep[i * 8:(i + 1) * 8, j * 8:(j + 1) * 8]
            assert abs(float(got[i, j]) - float(blk[k].double().sum())) < 1e-9
    assert torch.equal(unblocks(blocks(s, 8)), s)
    assert torch.equal(blocks(s, 8)[1, 2], s[8:16, 16:24])


def test_masks_keep_two_of_four_and_k_per_block():
    torch.manual_seed(1)
    s = torch.rand(8, 16)
    keep = torch.ones(8, 16, dtype=torch.bool)
    m = mask_2_4(s, keep)
    for r in range(8):
        for g in range(4):
            grp = s[r, 4 * g:4 * g + 4]
            top = set(torch.topk(grp, 2).indices.tolist())
            assert {i for i in range(4) if m[r, 4 * g + i]} == top
    t = mask_topk(s, keep, 4, 3)
    assert (blocks(t, 4).sum(dim=(-1, -2)) == 3).all()
    for i in range(2):
        for j in range(4):
            blk, kb = blocks(s, 4)[i, j].flatten(), blocks(t, 4)[i, j].flatten()
            assert set(kb.nonzero().flatten().tolist()) == set(blk.topk(3).indices.tolist())


def hand_made():
    """Four 4x4 blocks in a row: P (already 2:4, score 2 everywhere), A (all 1),
    B (5 at the first column of every row, else 0), C (all 4)."""
    s = torch.zeros(4, 16)
    s[:, 0:4] = 2.0
    s[:, 4:8] = 1.0
    s[:, 8] = 5.0
    s[:, 12:16] = 4.0
    tiers = torch.tensor([[MID_2_4, DENSE, DENSE, DENSE]], dtype=torch.int8)
    keep = torch.ones(4, 16, dtype=torch.bool)
    keep[:, 2:4] = False  # P's 2:4 pattern from an earlier iteration
    return s, tiers, keep


def test_two_phase_demotion_rescored_on_nonzero_weights():
    s, tiers, keep = hand_made()
    # phase 1: dense sums A=16, B=20, C=64 -> A and B demoted to 2:4.
    # phase 2 on kept weights: P=16 (not 32), A=8, B=20 -> the two lowest are A and P.
    new, k = demote_iteration(tiers, s, keep, bs=4, k=2, to_mid=2 / 3, to_topk=2 / 3)
    assert new.tolist() == [[TOPK, TOPK, MID_2_4, DENSE]]
    assert k[:, 12:16].all()                                   # C dense
    assert k[:, 8:12].sum() == 8 and k[:, 8].all()             # B 2:4 keeps the 5s
    assert k[:, 4:8].sum() == 2 and k[0, 4] and k[0, 5]        # A: k=2, ties to lower index
    assert k[:, 0:4].sum() == 2 and not k[:, 2:4].any()        # P: k=2 among its kept
    # masks only shrink: nothing pruned before is kept now
    assert not (k & ~keep).any()


def test_one_way_and_never_revives_pruned_weights():
    s, tiers, keep = hand_made()
    s2 = s.clone()
    s2[:, 2:4] = 100.0  # the pruned weights of P now score highest
    new, k = demote_iteration(tiers, s2, keep, bs=4, k=2, to_mid=0.0, to_topk=0.0)
    assert torch.equal(new, tiers)
    assert torch.equal(k, keep)
    t2 = torch.tensor([[TOPK, MID_2_4, DENSE, DENSE]], dtype=torch.int8)
    k2 = tier_mask(t2, s, keep, 4, 2)
    new2, k3 = demote_iteration(t2, -s, k2, bs=4, k=2, to_mid=1.0, to_topk=0.0)
    assert new2.tolist() == [[TOPK, MID_2_4, MID_2_4, MID_2_4]]  # TOPK never moves back
    assert not (k3 & ~k2).any()


def test_example_schedule_reaches_its_implied_sparsity():
    torch.manual_seed(0)
    steps = load_schedule("schedules/tiers_example.csv")
    w = torch.randn(160, 160)  # 100 blocks of 16x16: the schedule's fractions are whole blocks
    tiers, keep = new_tiers(w.shape, 16), torch.ones(160, 160, dtype=torch.bool)
    got = []
    for st in steps:
        score = (w * keep).abs() + torch.rand(160, 160) * 1e-3  # "fine-tuning" changes the scores
        tiers, keep = demote_iteration(tiers, score, keep, 16, 10, st.dense_to_2_4,
                                       st.mid_2_4_to_topk)
        sh = tier_shares(tiers)
        assert abs(sh["dense"] - st.dense) < 1e-9 and abs(sh["topk"] - st.topk) < 1e-9
        got.append(1 - keep.double().mean().item())
        assert abs(got[-1] - st.sparsity(16, 10)) < 1e-9
    assert [round(100 * g) for g in got] == [5, 15, 24, 34, 42]


def test_shape_checks():
    with pytest.raises(UserError):
        new_tiers((30, 32), 16)
    with pytest.raises(UserError):
        new_tiers((30, 30), 6)
