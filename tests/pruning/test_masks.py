import pytest
import torch

from gpsearch.errors import UserError
from gpsearch.pruning.masks import check_sparsity, make_mask, parse_pattern


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.73, 0.9])
def test_unstructured_row_counts_are_exact(s):
    score = torch.randn(7, 33, generator=torch.Generator().manual_seed(1))
    mask = make_mask(score, s, parse_pattern("unstructured"))
    assert (mask.sum(dim=1) == int(s * 33)).all()
    # every pruned score in a row is <= every kept one
    for r in range(7):
        if mask[r].any() and (~mask[r]).any():
            assert score[r][mask[r]].max() <= score[r][~mask[r]].min()


def test_unstructured_matrix_counts_and_threshold():
    score = torch.randn(10, 20, generator=torch.Generator().manual_seed(2))
    mask = make_mask(score, 0.35, parse_pattern("unstructured", scope="matrix"))
    assert int(mask.sum()) == int(0.35 * 200)
    assert score[mask].max() <= score[~mask].min()
    assert not (mask.sum(dim=1) == mask.sum(dim=1)[0]).all()  # rows differ: one global group


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_nm_groups(pattern, n, m):
    score = torch.randn(6, 32, generator=torch.Generator().manual_seed(3))
    mask = make_mask(score, n / m, parse_pattern(pattern, n / m))
    groups = mask.reshape(6, 32 // m, m)
    assert (groups.sum(dim=-1) == n).all()
    sg = score.reshape(6, 32 // m, m)
    assert (sg.masked_fill(~groups, -1e9).amax(-1) <= sg.masked_fill(groups, 1e9).amin(-1)).all()


def test_ties_are_broken_by_lower_index():
    score = torch.ones(2, 8)
    mask = make_mask(score, 0.5, parse_pattern("unstructured"))
    assert mask[:, :4].all() and not mask[:, 4:].any()
    assert torch.equal(mask, make_mask(score.clone(), 0.5, parse_pattern("unstructured")))


def test_bad_patterns_and_sparsities():
    with pytest.raises(UserError):
        parse_pattern("2:4", 0.6)
    with pytest.raises(UserError):
        parse_pattern("5:4")
    with pytest.raises(UserError):
        parse_pattern("blocky")
    for s in (-0.1, 1.0, 1.5):
        with pytest.raises(UserError):
            check_sparsity(s)
    with pytest.raises(UserError):
        make_mask(torch.randn(3, 6), 0.5, parse_pattern("2:4", 0.5))


@pytest.mark.parametrize("shape,k", [((9, 40), 20), ((5, 12), 1), ((5, 12), 11), ((3, 10, 4), 2)])
def test_lowest_equals_a_stable_sort_even_with_many_ties(shape, k):
    from gpsearch.pruning.masks import _lowest

    g = torch.Generator().manual_seed(4)
    for score in (torch.randint(0, 3, shape, generator=g).float(), torch.randn(shape, generator=g)):
        expected = torch.zeros(shape, dtype=torch.bool)
        expected.scatter_(-1, torch.sort(score, dim=-1, stable=True).indices[..., :k], True)
        assert torch.equal(_lowest(score, k), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape,k", [((6, 50), 25), ((4, 8), 3), ((4, 7, 4), 2), ((3, 5, 8), 5),
                                     ((2, 9), 4)])
def test_every_selection_path_is_the_stable_sort(dtype, shape, k):
    """numpy's selection (CPU float32/64), the pairwise ranking (last dim <= 8) and the top-k
    (other dtypes) all give the mask of a stable sort, ties included."""
    from gpsearch.pruning.masks import SMALL_GROUP, _lowest

    assert SMALL_GROUP == 8  # the shapes above cover both sides of it
    g = torch.Generator().manual_seed(5)
    for score in (torch.randint(0, 4, shape, generator=g).to(dtype),
                  torch.randn(shape, generator=g).to(dtype), torch.zeros(shape, dtype=dtype)):
        expected = torch.zeros(shape, dtype=torch.bool)
        expected.scatter_(-1, torch.sort(score.float(), dim=-1, stable=True).indices[..., :k], True)
        assert torch.equal(_lowest(score, k), expected)


def test_numpy_selection_sees_a_non_contiguous_score():
    from gpsearch.pruning.masks import _lowest

    score = torch.randn(40, 30, generator=torch.Generator().manual_seed(6)).t()  # a transposed view
    expected = torch.zeros(score.shape, dtype=torch.bool)
    expected.scatter_(-1, torch.sort(score, dim=-1, stable=True).indices[..., :10], True)
    assert torch.equal(_lowest(score, 10), expected)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_selection_over_row_blocks_is_the_stable_sort(monkeypatch, threads):
    """A score above PARALLEL_MIN_ELEMENTS is selected over row blocks in threads; the mask is
    the same as one stable sort's, ties included, whatever the thread count."""
    from gpsearch.pruning import masks

    monkeypatch.setattr(masks.torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(7)
    rows = masks.PARALLEL_MIN_ELEMENTS // 256 + 3  # x 256 columns: just above the threshold
    assert masks._partition_threads(rows, 256) == threads
    for score in (torch.randint(0, 5, (rows, 256), generator=g).float(),
                  torch.randn(rows, 256, generator=g, dtype=torch.float64)):
        expected = torch.zeros(score.shape, dtype=torch.bool)
        expected.scatter_(-1, torch.sort(score, dim=-1, stable=True).indices[..., :100], True)
        assert torch.equal(masks._lowest(score, 100), expected)
