"""Any tree as SparseGPT's mask selection: SparseGPT's own saliency written as a tree gives the
same masks and weights as the default; the tree sees the current (updated) weights in the
documented window; other trees give other masks with the same structure."""

import pytest
import torch

from gpsearch.config import CalibConfig
from gpsearch.methods.sparsegpt import prune_sparsegpt
from gpsearch.methods.sparsegpt_math import sparsegpt_prune
from gpsearch.methods.sparsegpt_metric import score_window, tree_score_fn
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import load_tree
from tests.conftest import loaded, make_llama, make_opt

SPARSEGPT_TREE = "pdiv(sqr(W), H)"  # w^2 / U_jj^2 with H = U_jj^2 (see sparsegpt_metric)


def _layer(rows=24, cols=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(500, cols, generator=g) * (torch.rand(cols, generator=g) * 3 + 0.2)
    return torch.randn(rows, cols, generator=g), 2 * x.T @ x / 8, x


@pytest.mark.parametrize("n,m,bs,mbs", [(0, 0, 128, 128), (0, 0, 16, 32), (0, 0, 32, 16),
                                        (2, 4, 128, 128), (2, 4, 16, 64), (4, 8, 32, 32)])
def test_sparsegpt_saliency_as_tree_equals_default(n, m, bs, mbs):
    W, H, _ = _layer()
    tree = load_tree(SPARSEGPT_TREE)
    ref_w, ref_mask = sparsegpt_prune(W, H, 0.5, n, m, bs, mbs)
    got_w, got_mask = sparsegpt_prune(W, H, 0.5, n, m, bs, mbs,
                                      score_fn=tree_score_fn(tree, None, None),
                                      score_window=score_window(tree, mbs))
    assert torch.equal(got_mask, ref_mask) and torch.equal(got_w, ref_w)


def _evaluator(make, tokenizer, corpus, tmp_path):
    calib = CalibConfig(data=corpus, nsamples=8, seqlen=32, batch_size=4)
    return Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make(), tokenizer))


@pytest.mark.parametrize("make,pattern", [(make_llama, "unstructured"), (make_opt, "2:4")])
def test_model_level_same_as_default_and_other_trees_differ(make, pattern, tokenizer, corpus,
                                                             tmp_path):
    ev = _evaluator(make, tokenizer, corpus, tmp_path)
    pat = parse_pattern(pattern, 0.5)
    prune_sparsegpt(ev, 0.5, pat)
    ref = {n: lin.weight.detach().clone() for n, lin in ev.linears.items()}
    ev.restore()
    info = prune_sparsegpt(ev, 0.5, pat, metric=SPARSEGPT_TREE)
    assert info["metric"] == SPARSEGPT_TREE
    for name, lin in ev.linears.items():
        assert torch.equal(lin.weight, ref[name]), name
    ev.restore()
    prune_sparsegpt(ev, 0.5, pat, metric="add(mul(W, sqrt(X)), zsn(mul(mul(W, sqrt(sqrt(X))), G)))")
    differ = 0
    for name, lin in ev.linears.items():
        zeros = lin.weight == 0
        assert int(zeros.sum()) == zeros.numel() // 2, name
        if pat.kind == "nm":
            assert bool((zeros.reshape(zeros.shape[0], -1, 4).sum(-1) == 2).all()), name
        differ += int((zeros != (ref[name] == 0)).sum())
    assert differ > 0


def test_terminals_are_current_weights_and_block_statistics():
    W, H, x = _layer(rows=8, cols=48)
    X = x.square().sum(0, keepdim=True) / 8
    G = torch.rand(8, 48) + 0.5
    seen = []
    inner = tree_score_fn(load_tree("mul(mul(W, sqrt(X)), G)"), X, G)

    def spy(w, j0, j1, u):
        seen.append((w.clone(), j0, j1))
        return inner(w, j0, j1, u)

    new_w, mask = sparsegpt_prune(W, H, 0.5, 2, 4, blocksize=16, mask_blocksize=16, score_fn=spy)
    # elementwise: M
    assert [(j0, j1) for _, j0, j1 in seen] == [(j, j + 4) for j in range(0, 48, 4)]
    assert torch.equal(seen[0][0], W[:, :4])  # nothing updated before the first group
    assert not torch.allclose(seen[5][0], W[:, 20:24])  # later groups: the OBS-updated weights
    # the mask is the tree's ranking of what the tree saw
    for w, j0, j1 in seen:
        score = w.abs() * X[:, j0:j1].sqrt() * G[:, j0:j1]
        lowest = torch.sort(score, dim=1, stable=True).indices[:, :2]
        assert torch.equal(mask[:, j0:j1],
                           torch.zeros_like(score, dtype=torch.bool).scatter_(1, lowest, True))


def test_normalising_trees_see_a_wider_window_for_nm():
    W, H, _ = _layer(rows=8, cols=48)
    tree = load_tree("zsn(W)")
    assert score_window(tree, 16) == 16 and score_window(load_tree("mul(W, sqrt(X))"), 16) == 0
    widths = []
    inner = tree_score_fn(tree, None, None)

    def spy(w, j0, j1, u):
        widths.append((j0, j1))
        return inner(w, j0, j1, u)

    sparsegpt_prune(W, H, 0.5, 2, 4, blocksize=16, mask_blocksize=16, score_fn=spy, score_window=16)
    assert widths[0] == (0, 16) and widths[-1] == (44, 48)  # cut at the matrix edge


def test_bad_tree_output_raises():
    from gpsearch.errors import TreeError

    W, H, _ = _layer(rows=4, cols=16)
    fn = tree_score_fn(load_tree("log(sub(W, W))"), None, None)  # finite but constant: allowed
    sparsegpt_prune(W, H, 0.5, score_fn=fn)
    with pytest.raises(ValueError):
        tree_score_fn(load_tree("mul(W, X)"), None, None)
    nan_g = torch.full((4, 16), float("nan"))
    with pytest.raises(TreeError):
        sparsegpt_prune(W, H, 0.5, score_fn=tree_score_fn(load_tree("mul(W, G)"), None, nan_g))
