"""``gpsearch allocate``: search a layer-wise sparsity allocation for a fixed metric tree
(``search.allocation_search``), scored with the metric search's staged fitness (KL to the dense
model or PPL, validation windows), then its TEST perplexity beside the uniform allocation.
With ``also_trees`` the search is joint: the genome is (a tree of the pool, the levels), e.g.
the pool = a metric search's hall of fame; the test report then adds the chosen tree uniform.

Run directory: ``config.json``, ``state.json`` (the parent levels, their scores and the
generation, rewritten atomically after every generation), ``log.jsonl`` (one record per
generation), ``best_allocation.json`` (replay: ``gpsearch prune --allocation``, rewritten after
every generation), and at the end ``summary.json`` + ``best_allocation.png``. ``--resume DIR``
continues from ``state.json``; generation g draws from Random(seed, g), so a resumed run makes
the same choices as an uninterrupted one.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from gpsearch.errors import UserError


@dataclass
class AllocateSettings:
    tree: str = "wanda"
    also_trees: str = ""  # joint search: more metric trees, ';'-separated (the genome's tree part)
    p_tree: float = 0.25  # joint search: probability that a mutation switches the tree
    sparsity: float = 0.7
    model: str = "smollm2-135m"
    data: str = "wiki"
    nsamples: int = 128
    seqlen: int = 256
    calib_seed: int = 0
    batch_size: int = 4
    step: float = 0.02  # one level of the grid (fraction of zeros)
    max_shift: float = 0.2  # a block's sparsity stays within target +- max_shift
    generations: int = 50
    offspring: int = 16
    max_moves: int = 3  # level moves per mutation: 1..max_moves
    split_max: int = 5  # attention / MLP split gene: |split| <= this (0: none)
    p_split: float = 0.2  # probability that a mutation moves the split
    init: str = "ramps"  # generation 0: "ramps" (depth ramps x splits, staged) or "uniform"
    fitness: str = "kl"
    stages: str = "512:1,2048:0.25,8192:0.125"
    topk: int = 512
    seed: int = 0
    time_budget: float | None = None  # seconds; stop after the generation that passes it
    test_windows: int = 64
    test_uniform: bool = True  # also measure the uniform allocation's test PPL at the end
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None


INITS = ("ramps", "uniform")
RAMP_SLOPES = (-0.5, -0.25, 0.25, 0.5, 0.75, 1.0)  # seeds' depth slopes, x --max-shift
SEED_SPLITS = (0, 0.5, 1.0)  # seeds' splits, x --split-max


def attention_kind(kind: str) -> bool:
    return "attn" in kind or "attention" in kind


def split_ratios(shapes: dict, blocks: int) -> list[float] | None:
    """Per block: attention weights / MLP (all other) weights; None when a block lacks either."""
    from gpsearch.allocation.levels import block_index, kind_of

    att, mlp = [0] * blocks, [0] * blocks
    for n, (r, c) in shapes.items():
        (att if attention_kind(kind_of(n)) else mlp)[block_index(n)] += r * c
    if not all(att) or not all(mlp):
        return None
    return [a / m for a, m in zip(att, mlp)]


def _write_json(path: Path, obj) -> None:
    from gpsearch.io import write_json

    write_json(path, obj)


def _read_json(path: Path, limit: int = 1 << 22):
    from gpsearch.io import read_json

    return read_json(path, str(path), limit)


def check_settings(s: AllocateSettings):
    from gpsearch.fitness.stages import FITNESS_KINDS, parse_stages
    from gpsearch.pruning.masks import check_sparsity

    check_sparsity(s.sparsity)
    if s.fitness not in FITNESS_KINDS:
        raise UserError(f"--fitness must be one of {', '.join(FITNESS_KINDS)}")
    if s.generations < 1 or s.offspring < 1 or s.max_moves < 1:
        raise UserError("--generations, --offspring and --max-moves must be >= 1")
    if not 0 < s.step <= s.max_shift < 1:
        raise UserError(f"need 0 < --step <= --max-shift < 1, got {s.step}, {s.max_shift}")
    if not 0 <= s.p_tree <= 1:
        raise UserError(f"--p-tree must be in [0, 1], got {s.p_tree}")
    if not 0 <= s.p_split <= 1 or s.split_max < 0:
        raise UserError("need --p-split in [0, 1] and --split-max >= 0")
    if s.init not in INITS:
        raise UserError(f"--init must be one of {', '.join(INITS)}, got {s.init!r}")
    return tree_pool(s), parse_stages(s.stages, s.seqlen)


def tree_pool(s: AllocateSettings) -> list:
    """--tree first, then --also-trees (';'-separated specs); duplicates are an error."""
    from gpsearch.tree import load_tree, to_prefix

    specs = [s.tree] + [x.strip() for x in (s.also_trees or "").split(";") if x.strip()]
    pool = [load_tree(x) for x in specs]
    prefixes = [to_prefix(t) for t in pool]
    twice = sorted({x for x in prefixes if prefixes.count(x) > 1})
    if twice:
        raise UserError(f"the tree pool names {twice[0]} twice")
    return pool


def run_allocate(settings: AllocateSettings | None = None, out: str | None = None,
                 resume: str | None = None, log=tqdm.write, evaluator=None,
                 progress: bool = True, plot: bool = True) -> dict:
    """Run (or continue) an allocation search; returns the summary. ``evaluator``: a resident
    model to use instead of loading ``settings.model`` (its calibration is used)."""
    from gpsearch.allocation.file import write_allocation
    from gpsearch.allocation.levels import (
        Allocated,
        Allocation,
        check_allocation,
        exact_ratios,
        kind_of,
    )
    from gpsearch.allocation.search import (
        Candidate,
        Grid,
        check_levels,
        generation,
        seed_candidates,
        seed_generation,
    )
    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.io import code_version
    from gpsearch.model.load import set_threads
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import parse_pattern
    from gpsearch.tree import to_prefix

    if resume:
        rd = Path(resume)
        cfg = _read_json(rd / "config.json")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("settings"), dict):
            raise UserError(f"{rd}/config.json: not an allocate run")
        known = set(AllocateSettings.__dataclass_fields__)
        given = cfg["settings"]
        if set(given) - known:
            raise UserError(f"{rd}/config.json: unknown settings")
        given = {"init": "uniform", "split_max": 0, **given}  # runs from before these genes
        base = AllocateSettings(**given)
        if settings is not None:  # only the generation count / time budget may change
            base.generations, base.time_budget = settings.generations, settings.time_budget
        settings = base
    else:
        settings = settings or AllocateSettings()
        if not out:
            raise UserError("give --out DIR (or --resume DIR)")
        rd = Path(out)
        if rd.exists() and any(rd.iterdir()):
            raise UserError(f"{rd} exists and is not empty (use --resume {rd})")
    pool, stages = check_settings(settings)
    pattern = parse_pattern("unstructured")
    s = settings
    set_threads()
    calib = CalibConfig(data=s.data, nsamples=s.nsamples, seqlen=s.seqlen, seed=s.calib_seed,
                        batch_size=s.batch_size)
    if evaluator is None:
        evaluator = Evaluator(s.model, calib, s.dtype, s.device, s.cache_dir, progress=False)
    shapes = evaluator.shapes()
    blocks = 1 + max(int(n.split(".", 1)[0]) for n in shapes)
    shift = split_ratios(shapes, blocks) if s.split_max else None
    grid = Grid(s.sparsity, s.step, int(round(s.max_shift / s.step)), blocks,
                split_max=s.split_max if shift else 0, mlp_shift=tuple(shift or ()))
    val = EvalConfig(data=s.data, split="validation", seqlen=s.seqlen,
                     max_windows=stages[-1].windows, batch_size=s.batch_size)
    windows = evaluator.windows(val)
    if windows.shape[0] < stages[-1].windows:
        raise UserError(f"the validation split has {windows.shape[0]} windows; the last stage "
                        f"needs {stages[-1].windows}")

    state = None
    if resume:
        st = _read_json(rd / "state.json")
        if not isinstance(st, dict) or not isinstance(st.get("generation"), int):
            raise UserError(f"{rd}/state.json: malformed")
        state = st
    rd.mkdir(parents=True, exist_ok=True)
    version = code_version()  # the code of this session: config, state and best file record it
    if not resume:
        _write_json(rd / "config.json", {"settings": asdict(s), "tree": to_prefix(pool[0]),
                                         "trees": [to_prefix(x) for x in pool],
                                         "blocks": blocks, **version})

    from gpsearch.fitness.windows import cached_reference, window_scores
    from gpsearch.pruning.features import default_cache_dir

    ref = None
    if s.fitness == "kl":
        cache = evaluator.features.cache_dir or default_cache_dir()
        ref = cached_reference(evaluator.model, evaluator.lm.identity, windows, val.to_dict(),
                               s.topk, Path(cache), s.batch_size)
    for tree in pool:
        evaluator.prepare(tree)

    def allocation_of(levels, split: int = 0, info=None) -> Allocation:
        kinds = {}
        if split:
            att, mlp = grid.kind_ratios(levels, split)
            kinds = {k: (att if attention_kind(k) else mlp)
                     for k in sorted({kind_of(n) for n in shapes})}
        return Allocation(s.sparsity, grid.ratios(levels), kinds, method="search",
                          info=info or {})

    def sparsity_of(levels, split: int = 0) -> Allocated:
        alloc = allocation_of(levels, split)
        ratios = check_allocation(alloc, shapes)
        return Allocated(s.sparsity, exact_ratios(ratios, shapes, s.sparsity), alloc)

    n_scored = [0]
    ranked = _ranked_scores(evaluator, pool)

    def score_windows(levels, a, b, tree=0, split=0):
        n_scored[0] += 1
        try:
            sp = sparsity_of(levels, split)
            if ranked is None:
                evaluator.prune(pool[tree], sp, pattern)
            else:  # the trees' scores never change: masks from their order, sorted once
                from gpsearch.allocation.levels import ratio_of

                evaluator.apply_masks({n: r.mask(ratio_of(sp, n))
                                       for n, r in ranked[tree].items()})
            out = window_scores(evaluator.model, windows[a:b], s.batch_size, ref, a)
        finally:
            evaluator.restore()
        return out["kl"] if s.fitness == "kl" else out["nll"]

    if state is None:
        parent, gen0 = Candidate(tuple([0] * blocks)), 0
    else:
        index = state.get("tree_index", 0)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(pool):
            raise UserError(f"{rd}/state.json: tree_index outside the pool of {len(pool)}")
        levels, split = check_levels(state.get("levels"), grid), state.get("split", 0)
        if not isinstance(split, int) or isinstance(split, bool) or not grid.valid(levels, split):
            raise UserError(f"{rd}/state.json: split outside the grid")
        parent = Candidate(levels,
                           [float(v) for v in state.get("values", [])],
                           [float(v) for v in state.get("stage_scores", [])], index, split)
        gen0 = state["generation"]
    t0 = time.perf_counter()
    uniform_score = state.get("uniform_score") if state else None

    def record(g: int, rec: dict) -> None:  # log line, best file and state of generation g
        rec.update(generation=g, seconds=time.perf_counter() - t0, scored=n_scored[0])
        with open(rd / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        info = {"tree": to_prefix(pool[parent.tree]), "fitness": s.fitness, "stages": s.stages,
                "score": parent.stage_scores[-1], "generation": g, "split": parent.split,
                "uniform_score": uniform_score, **version}
        write_allocation(allocation_of(parent.levels, parent.split, info),
                         rd / "best_allocation.json")
        _write_json(rd / "state.json", {"generation": g, "levels": list(parent.levels),
                                        "split": parent.split, "values": parent.values,
                                        "stage_scores": parent.stage_scores,
                                        "uniform_score": uniform_score,
                                        "tree_index": parent.tree, **version})

    if state is None and s.init == "ramps":  # generation 0: ramps x splits against uniform
        seeds = seed_candidates(grid, [x * s.max_shift for x in RAMP_SLOPES],
                                sorted({round(x * grid.split_max) for x in SEED_SPLITS}))
        log(f"generation 0: the uniform allocation and {len(seeds)} seeds (depth ramps x "
            f"attention / MLP splits)")
        parent, rec = seed_generation(parent, seeds, stages, s.fitness, score_windows, len(pool))
        uniform_score = rec["parent_score"]
        record(0, rec)
    bar = tqdm(range(gen0, s.generations), desc="allocate", initial=gen0, total=s.generations,
               disable=not progress)
    for g in bar:
        rng = random.Random(s.seed * 1_000_003 + g)
        parent, rec = generation(parent, grid, stages, s.fitness, score_windows, rng,
                                 s.offspring, s.max_moves, len(pool), s.p_tree, s.p_split)
        if uniform_score is None:
            uniform_score = rec["parent_score"]
        record(g + 1, rec)
        bar.set_postfix_str(f"{s.fitness} {parent.stage_scores[-1]:.4f} (uniform "
                            f"{uniform_score:.4f})"
                            + (f" tree {parent.tree}" if len(pool) > 1 else ""))
        if s.time_budget is not None and time.perf_counter() - t0 > s.time_budget:
            log(f"time budget {s.time_budget:g} s reached after generation {g + 1}")
            break
    return _finish(evaluator, pool, s, rd, parent, sparsity_of, pattern, uniform_score, plot)


RANKED_MAX_BYTES = 4 << 30  # host memory for the sorted score orders (2 bytes per weight)


def _ranked_scores(evaluator, pool: list) -> list | None:
    """Per tree of the pool: name -> ``RankedScores`` (None when they would pass
    RANKED_MAX_BYTES: every candidate then scores and masks again)."""
    from gpsearch.pruning.ranked import RankedScores

    if 2 * len(pool) * sum(r * c for r, c in evaluator.shapes().values()) > RANKED_MAX_BYTES:
        return None
    return [{n: RankedScores(evaluator.score(tree, n).float().cpu()) for n in evaluator.linears}
            for tree in pool]


def _finish(evaluator, pool, s, rd: Path, parent, sparsity_of, pattern, uniform_score,
            plot: bool = True) -> dict:
    from gpsearch.allocation.levels import per_block
    from gpsearch.config import EvalConfig
    from gpsearch.io import code_version
    from gpsearch.plots import plot_block_allocation

    test = EvalConfig(data=s.data, split="test", seqlen=s.seqlen, max_windows=s.test_windows,
                      batch_size=s.batch_size)
    rows = {}
    chosen = pool[parent.tree]
    todo = [("uniform", pool[0], s.sparsity)] if s.test_uniform else []
    if s.test_uniform and parent.tree != 0:  # the chosen tree alone, without the allocation
        todo.append(("uniform, chosen tree", chosen, s.sparsity))
    for name, tree, sp in todo + [("searched", chosen, sparsity_of(parent.levels, parent.split))]:
        counts = evaluator.prune(tree, sp, pattern)
        try:
            rows[name] = {"ppl": evaluator.perplexity(test)["ppl"],
                          "achieved_sparsity": sum(z for z, _ in counts.values())
                          / sum(t for _, t in counts.values()),
                          "block_sparsity": per_block(counts)}
        finally:
            evaluator.restore()
    from gpsearch.tree import to_prefix

    summary = {"tree": to_prefix(chosen), "tree_index": parent.tree,
               "pool": [to_prefix(x) for x in pool], "sparsity": s.sparsity, "test": test.to_dict(),
               "val_score": {"uniform": uniform_score, "searched": parent.stage_scores[-1],
                             "fitness": s.fitness},
               "rows": rows, "levels": list(parent.levels), "split": parent.split,
               **code_version()}
    _write_json(rd / "summary.json", summary)
    if not plot:
        return {"run_dir": str(rd), **summary}
    series = {f"{k}: test PPL {v['ppl']:.2f}": v["block_sparsity"] for k, v in rows.items()}
    plot_block_allocation(series, rd / "best_allocation.png", s.sparsity,
                          f"searched allocation for {to_prefix(chosen)}")
    return {"run_dir": str(rd), **summary}
