import json
import random

import pytest

from gpsearch.allocation.search import (
    Candidate,
    Grid,
    check_levels,
    generation,
    mutate,
    score_stages,
)
from gpsearch.errors import UserError
from gpsearch.fitness.stages import parse_stages
from gpsearch.io import code_version


def test_mutation_keeps_the_total_and_the_grid():
    grid = Grid(0.7, 0.02, 5, 12)
    rng = random.Random(1)
    levels = tuple([0] * 12)
    moved = False
    for _ in range(500):
        levels = mutate(levels, grid, rng, rng.randint(1, 4))
        assert sum(levels) == 0  # the total sparsity never changes
        assert all(abs(v) <= 5 for v in levels)
        total = sum(grid.ratios(levels)) / 12
        assert total == pytest.approx(0.7, abs=1e-12)
        moved |= any(levels)
    assert moved


def test_mutation_respects_the_sparsity_bounds():
    grid = Grid(0.05, 0.02, 5, 3)  # levels below -2 would be negative sparsity
    rng = random.Random(0)
    levels = (0, 0, 0)
    for _ in range(300):
        levels = mutate(levels, grid, rng, 2)
        assert sum(levels) == 0 and all(grid.sparsity(v) >= 0 for v in levels)


def test_generation_finds_the_better_allocation():
    """A synthetic fitness whose optimum is known: block 0 should be pruned less."""
    grid = Grid(0.5, 0.05, 4, 4)
    stages = parse_stages("2:1,4:0.5", 1)
    calls = []

    def score(levels, a, b):
        calls.append((levels, a, b))
        cost = (levels[0] + 3) ** 2 + sum(v * v for v in levels[1:]) * 0.1
        return [float(cost)] * (b - a)

    parent = Candidate(tuple([0] * 4))
    rng = random.Random(0)
    first = None
    for _ in range(30):
        parent, rec = generation(parent, grid, stages, "kl", score, rng, offspring=8)
        first = first if first is not None else rec["parent_score"]
        assert sum(parent.levels) == 0
    assert parent.levels[0] < 0 and parent.stage_scores[-1] < first
    # later stages only score the windows the earlier ones did not
    assert all((a, b) in ((0, 2), (2, 4), (0, 4)) for _, a, b in calls)


def test_staged_scoring_promotes_only_the_best():
    stages = parse_stages("1:1,3:0.25", 1)
    cands = [Candidate((i,)) for i in range(8)]
    score_stages(cands, stages, "kl", lambda lv, a, b: [float(lv[0])] * (b - a))
    assert [len(c.stage_scores) for c in cands] == [2, 2] + [1] * 6
    assert cands[0].values == [0.0, 0.0, 0.0]


def test_check_levels():
    grid = Grid(0.5, 0.1, 2, 3)
    assert check_levels([1, -1, 0], grid) == (1, -1, 0)
    for bad in ([1, 0, 0], [3, -3, 0], [1, -1], "x", [1.0, -1, 0]):
        with pytest.raises(UserError):
            check_levels(bad, grid)


def test_allocate_end_to_end_replays_and_resumes(tokenizer, corpus, tmp_path, one_thread):
    from gpsearch.allocation.apply import allocate, parse_spec
    from gpsearch.allocation.file import read_allocation
    from gpsearch.config import CalibConfig
    from gpsearch.jobs.allocate import AllocateSettings, run_allocate
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import parse_pattern
    from tests.conftest import loaded, make_llama

    s = AllocateSettings(tree="wanda", sparsity=0.6, data=corpus, nsamples=4, seqlen=16,
                         batch_size=2, step=0.05, max_shift=0.2, generations=2, offspring=3,
                         stages="32:1,64:0.5", test_windows=4, model="tiny")
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make_llama(), tokenizer))
    s.cache_dir = str(tmp_path / "cache")
    res = run_allocate(s, out=str(tmp_path / "run"), evaluator=ev, progress=False,
                       log=lambda m: None)
    rd = tmp_path / "run"
    alloc = read_allocation(rd / "best_allocation.json")
    assert len(alloc.blocks) == 2 and sum(alloc.blocks) / 2 == pytest.approx(0.6)
    # this seed's search moves the attention / MLP split gene: the file has per-kind sparsities
    assert res["split"] != 0 and set(alloc.kinds) == {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    assert abs(res["rows"]["searched"]["achieved_sparsity"] - 0.6) <= 1e-3
    assert (rd / "best_allocation.png").is_file()
    # the file replays: the same per-block sparsities as the search's final evaluation
    sp = allocate(ev, parse_spec(str(rd / "best_allocation.json")), 0.6,
                  parse_pattern("unstructured"))
    from gpsearch.tree import load_tree
    counts = ev.prune(load_tree("wanda"), sp, parse_pattern("unstructured"))
    ev.restore()
    from gpsearch.allocation.levels import per_block
    assert per_block(counts) == pytest.approx(res["rows"]["searched"]["block_sparsity"])
    for name, (zeros, total) in counts.items():  # each linear at its kind's sparsity
        block, kind = int(name.split(".")[0]), name.split(".", 1)[1]
        # rounding to whole weights per row of a 32-input matrix, the block's total kept exact:
        # within 0.03 (the kinds differ by 0.075; the block sparsity is 0.05 from either)
        assert zeros / total == pytest.approx(alloc.kinds[kind][block], abs=0.03)
    # resume to 3 generations: one more log line; an uninterrupted 3-generation run agrees
    s.generations = 3
    res3 = run_allocate(s, resume=str(rd), evaluator=ev, progress=False, log=lambda m: None,
                        plot=False)
    lines = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in lines] == [0, 1, 2, 3] and lines[0]["seeds"] > 0
    res_full = run_allocate(s, out=str(tmp_path / "full"), evaluator=ev, progress=False,
                            log=lambda m: None, plot=False)
    assert res3["levels"] == res_full["levels"]
    assert "uniform" in res3["rows"] and set(res_full["rows"]) == {"uniform", "searched"}
    s.test_uniform, s.generations, s.split_max = False, 1, 0
    one = run_allocate(s, out=str(tmp_path / "one"), evaluator=ev, progress=False,
                       log=lambda m: None, plot=False)
    assert set(one["rows"]) == {"searched"}
    assert one["split"] == 0
    assert not read_allocation(tmp_path / "one" / "best_allocation.json").kinds
    state = json.loads((rd / "state.json").read_text())
    assert state["generation"] == 3 and state["commit"] == code_version()["commit"]
    with pytest.raises(UserError, match="not empty"):
        run_allocate(s, out=str(rd), evaluator=ev, progress=False)


def test_joint_mutation_switches_trees_or_moves_levels_never_both():
    from gpsearch.allocation.search import mutate_candidate

    grid = Grid(0.5, 0.05, 4, 6)
    rng = random.Random(3)
    parent = Candidate((1, -1, 0, 0, 0, 0), tree=1)
    switched = moved = 0
    for _ in range(400):
        kid = mutate_candidate(parent, grid, rng, 3, trees=3, p_tree=0.3)
        assert sum(kid.levels) == 0
        if kid.tree != parent.tree:
            switched += 1
            assert kid.levels == parent.levels and kid.tree in (0, 2)
        else:
            moved += 1
    assert 80 < switched < 160 and moved > 200  # ~30% switches
    # one tree: exactly the draws of the single-tree search
    a, b = random.Random(5), random.Random(5)
    for _ in range(50):
        kid = mutate_candidate(Candidate((0,) * 6), grid, a, 3)
        assert kid.levels == mutate((0,) * 6, grid, b, b.randint(1, 3)) and kid.tree == 0


def test_joint_generation_finds_the_better_tree_and_allocation():
    grid = Grid(0.5, 0.05, 4, 4)
    stages = parse_stages("2:1,4:0.5", 1)
    seen = set()

    def score(levels, a, b, tree=0):
        seen.add(tree)
        cost = (levels[0] + 2) ** 2 + 5.0 * (tree != 2)  # tree 2 and a lighter block 0 win
        return [float(cost)] * (b - a)

    parent, rng = Candidate(tuple([0] * 4)), random.Random(0)
    for _ in range(30):
        parent, rec = generation(parent, grid, stages, "kl", score, rng, offspring=8, trees=3,
                                 p_tree=0.3)
        assert rec["tree"] == parent.tree
    assert parent.tree == 2 and parent.levels[0] == -2 and seen == {0, 1, 2}


def test_joint_allocate_end_to_end(tokenizer, corpus, tmp_path, one_thread):
    from gpsearch.allocation.file import read_allocation
    from gpsearch.config import CalibConfig
    from gpsearch.jobs.allocate import AllocateSettings, run_allocate, tree_pool
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.tree import to_prefix
    from tests.conftest import loaded, make_llama

    s = AllocateSettings(tree="wanda", also_trees="magnitude; mul(W, X)", p_tree=0.5,
                         sparsity=0.6, data=corpus, nsamples=4, seqlen=16, batch_size=2,
                         step=0.05, max_shift=0.2, generations=3, offspring=4,
                         stages="32:1,64:0.5", test_windows=4, model="tiny",
                         cache_dir=str(tmp_path / "cache"))
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make_llama(), tokenizer))
    res = run_allocate(s, out=str(tmp_path / "run"), evaluator=ev, progress=False,
                       log=lambda m: None, plot=False)
    pool = [to_prefix(t) for t in tree_pool(s)]
    assert res["pool"] == pool and res["tree"] == pool[res["tree_index"]]
    rd = tmp_path / "run"
    assert read_allocation(rd / "best_allocation.json").info["tree"] == res["tree"]
    state = json.loads((rd / "state.json").read_text())
    assert state["tree_index"] == res["tree_index"]
    assert ("uniform, chosen tree" in res["rows"]) == (res["tree_index"] != 0)
    recs = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["tree"] < 3 for r in recs)
    with pytest.raises(UserError, match="twice"):
        tree_pool(AllocateSettings(tree="wanda", also_trees="mul(W, sqrt(X))"))


def _split_grid(blocks=6, ratio=1 / 3):
    return Grid(0.6, 0.02, 5, blocks, split_max=4, mlp_shift=tuple([ratio] * blocks))


def test_split_mutation_keeps_every_block_total():
    """Attention weights A, MLP weights M = A / ratio: a block's weighted sparsity never moves."""
    from gpsearch.allocation.search import mutate_candidate

    grid, rng = _split_grid(), random.Random(2)
    a_w, m_w = 1.0, 3.0
    c, splits = Candidate(tuple([0] * 6)), set()
    for _ in range(400):
        c = mutate_candidate(c, grid, rng, 3, p_split=0.3)
        assert grid.valid(c.levels, c.split)
        att, mlp = grid.kind_ratios(c.levels, c.split)
        for b, x, y in zip(grid.ratios(c.levels), att, mlp):
            assert (a_w * x + m_w * y) / (a_w + m_w) == pytest.approx(b, abs=1e-12)
            assert (x >= b >= y) if c.split >= 0 else (x < b < y)
        splits.add(c.split)
    assert len(splits) > 3 and max(abs(v) for v in splits) <= 4


def test_split_never_leaves_the_sparsity_range():
    grid = Grid(0.9, 0.02, 4, 4, hi=0.99, split_max=8, mlp_shift=(0.5,) * 4)
    assert grid.valid((0,) * 4, 4) and not grid.valid((0,) * 4, 5)  # 0.9 + 0.1 > 0.99
    assert not grid.valid((4, -4, 0, 0), 1)  # block 0 at 0.98: attention 1.0 > 0.99
    from gpsearch.allocation.search import mutate_candidate

    rng, c = random.Random(0), Candidate((0,) * 4, split=4)
    for _ in range(300):
        c = mutate_candidate(c, grid, rng, 2, p_split=0.5)
        att, mlp = grid.kind_ratios(c.levels, c.split)
        assert max(att + mlp) <= 0.99 + 1e-12 and min(att + mlp) >= 0


def test_ramp_levels_and_seeds():
    from gpsearch.allocation.search import ramp_levels, seed_candidates

    grid = _split_grid(blocks=7)
    lv = ramp_levels(grid, 0.06)  # 3 levels at the ends
    assert lv == (-3, -2, -1, 0, 1, 2, 3) and sum(lv) == 0
    assert ramp_levels(grid, 0.5) == (-5, -5, -5, 0, 5, 5, 5)  # clipped to max_level, still 0
    assert sum(ramp_levels(Grid(0.5, 0.05, 4, 30), 0.13)) == 0
    assert ramp_levels(Grid(0.05, 0.02, 5, 4), 0.1) is None  # block 0 below 0 sparsity
    seeds = seed_candidates(grid, [0.0, 0.06, 0.06, -0.04], [0, 2])
    keys = [(c.levels, c.split) for c in seeds]
    assert len(keys) == len(set(keys)) == 5  # uniform (slope 0, split 0) left out, no repeats
    assert ((0,) * 7, 2) in keys and all(grid.valid(*k) for k in keys)


def test_seed_generation_keeps_uniform_unless_a_seed_beats_it():
    from gpsearch.allocation.search import seed_generation

    stages = parse_stages("2:1,4:0.5", 1)

    def score(levels, a, b, split=0):  # a light block 0 and a split of 2 are best
        return [float((levels[0] + 2) ** 2 + (split - 2) ** 2)] * (b - a)

    seeds = [Candidate((-2, -1, 1, 2), split=2), Candidate((2, 1, -1, -2)),
             Candidate((-2, -1, 1, 2))]
    best, rec = seed_generation(Candidate((0,) * 4), seeds, stages, "kl", score)
    assert (best.levels, best.split) == ((-2, -1, 1, 2), 2) and rec["improved"]
    assert rec["parent_score"] == 8.0 and rec["score"] == 0.0 and rec["seeds"] == 3
    worse = [Candidate((2, 1, -1, -2))]
    best, rec = seed_generation(Candidate((0,) * 4), worse, stages, "kl", score)
    assert best.levels == (0,) * 4 and not rec["improved"]


def test_resuming_a_run_from_before_seeds_and_splits_keeps_its_genome(tokenizer, corpus,
                                                                      tmp_path, one_thread):
    """A config.json without init / split_max resumes as the uniform-start, split-free search
    it was; a new run with --init uniform --split-max 0 makes those same choices."""
    from gpsearch.config import CalibConfig
    from gpsearch.jobs.allocate import AllocateSettings, run_allocate
    from gpsearch.pruning.evaluator import Evaluator
    from tests.conftest import loaded, make_llama

    s = AllocateSettings(tree="wanda", sparsity=0.6, data=corpus, nsamples=4, seqlen=16,
                         batch_size=2, step=0.05, generations=1, offspring=3, init="uniform",
                         split_max=0, stages="32:1,64:0.5", test_windows=4, model="tiny",
                         test_uniform=False, cache_dir=str(tmp_path / "cache"))
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = Evaluator(calib=calib, cache_dir=tmp_path / "cache", lm=loaded(make_llama(), tokenizer))
    kw = dict(evaluator=ev, progress=False, log=lambda m: None, plot=False)
    run_allocate(s, out=str(tmp_path / "old"), **kw)
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for k in ("init", "split_max", "p_split"):
        del cfg["settings"][k]  # the settings of a run made before these options
    cfg_path.write_text(json.dumps(cfg))
    s.generations = 4
    old = run_allocate(s, resume=str(tmp_path / "old"), **kw)
    new = run_allocate(s, out=str(tmp_path / "new"), **kw)
    assert old["levels"] == new["levels"] and old["split"] == new["split"] == 0
    recs = [json.loads(x) for x in (tmp_path / "old" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in recs] == [1, 2, 3, 4] and "seeds" not in recs[0]
