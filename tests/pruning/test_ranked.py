"""RankedScores: masks at any ratio equal make_mask's (ties included)."""

import pytest
import torch

from gpsearch.pruning.masks import make_mask, parse_pattern
from gpsearch.pruning.ranked import RankedScores


@pytest.mark.parametrize("ties", [False, True])
def test_masks_equal_make_mask_at_every_ratio(ties):
    g = torch.Generator().manual_seed(0)
    score = torch.randn(24, 40, generator=g)
    if ties:  # few distinct values: most thresholds fall inside a run of ties
        score = torch.round(score * 2) / 2
    ranked = RankedScores(score)
    assert ranked.order.dtype == torch.int16 and ranked.nbytes() == 24 * 40 * 2
    for ratio in (0.0, 0.013, 0.25, 0.5, 0.5 + 1e-6, 0.7, 0.97, 1.0):
        want = make_mask(score, ratio, parse_pattern("unstructured", ratio if ratio < 1 else 0.5))
        assert torch.equal(ranked.mask(ratio), want), ratio


def test_refuses_non_matrix():
    with pytest.raises(ValueError):
        RankedScores(torch.zeros(3))


def test_allocation_search_masks_equal_the_evaluators(tiny_lm, corpus, tmp_path, one_thread):
    """The allocation search's sorted-once masks are the masks ``Evaluator.prune`` makes."""
    from gpsearch.allocation.levels import (
        Allocated,
        Allocation,
        check_allocation,
        exact_ratios,
        ratio_of,
    )
    from gpsearch.config import CalibConfig
    from gpsearch.jobs.allocate import _ranked_scores
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.tree import load_tree

    ev = Evaluator(calib=CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2),
                   cache_dir=tmp_path, lm=tiny_lm)
    tree = load_tree("wanda")
    ranked = _ranked_scores(ev, [tree])[0]
    shapes = ev.shapes()
    alloc = Allocation(0.6, [0.45, 0.75])
    sp = Allocated(0.6, exact_ratios(check_allocation(alloc, shapes), shapes, 0.6), alloc)
    want = ev.compute_masks(tree, sp, parse_pattern("unstructured"))
    for n, r in ranked.items():
        assert torch.equal(r.mask(ratio_of(sp, n)), want[n]), n
