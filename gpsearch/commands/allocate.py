"""Search a layer-wise sparsity allocation for a fixed metric tree (EvoPress-style: per-block
levels on a grid, mutations that move sparsity between blocks so the total never changes,
(1 + lambda) selection on the staged validation fitness of the metric search). Writes
DIR/best_allocation.json after every generation: replay it with
``gpsearch prune --tree TREE --sparsity S --allocation DIR/best_allocation.json``.
(The Python function: ``gpsearch.allocate``.)"""

from __future__ import annotations

import argparse

from gpsearch.api import AllocateSettings

D = AllocateSettings()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", default=D.tree, help="the fixed metric (trees/NAME.json, a name, "
                   "or a prefix expression)")
    p.add_argument("--also-trees", default=D.also_trees,
                   help="joint search of tree + allocation: more metric trees, ';'-separated "
                        "(names, files or prefix expressions); a mutation switches the tree "
                        "with probability --p-tree")
    p.add_argument("--p-tree", type=float, default=D.p_tree,
                   help="joint search: probability that a mutation switches the tree")
    p.add_argument("--sparsity", type=float, default=D.sparsity, help="target fraction of zeros")
    p.add_argument("--out", default=None, help="new run directory")
    p.add_argument("--resume", default=None, help="continue this run directory")
    p.add_argument("--generations", type=int, default=D.generations)
    p.add_argument("--offspring", type=int, default=D.offspring, help="mutants per generation")
    p.add_argument("--max-moves", type=int, default=D.max_moves,
                   help="level moves per mutation, drawn from 1..N")
    p.add_argument("--split-max", type=int, default=D.split_max,
                   help="attention / MLP split gene: inside every block the attention linears "
                        "get up to this many --step levels more sparsity than the MLP ones (or "
                        "less), the block's total unchanged; 0 turns it off")
    p.add_argument("--p-split", type=float, default=D.p_split,
                   help="probability that a mutation moves the split by one level")
    p.add_argument("--init", default=D.init, choices=("ramps", "uniform"),
                   help="generation 0: 'ramps' scores depth ramps x splits (staged) and starts "
                        "from the best of them and uniform; 'uniform' starts from uniform")
    p.add_argument("--step", type=float, default=D.step, help="grid level (fraction of zeros)")
    p.add_argument("--max-shift", type=float, default=D.max_shift,
                   help="every block stays within sparsity +- this")
    p.add_argument("--fitness", default=D.fitness, choices=("kl", "ppl"))
    p.add_argument("--stages", default=D.stages, help="TOKENS:FRACTION,... (validation split)")
    p.add_argument("--topk", type=int, default=D.topk, help="KL reference top-K")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds; stop after the generation that passes it")
    p.add_argument("--test-windows", type=int, default=D.test_windows,
                   help="test-split windows for the final uniform vs searched perplexity")
    p.add_argument("--skip-uniform-test", action="store_true",
                   help="measure only the searched allocation on the test split at the end")
    p.add_argument("--model", default=D.model)
    p.add_argument("--data", default=D.data)
    p.add_argument("--nsamples", type=int, default=D.nsamples)
    p.add_argument("--seqlen", type=int, default=D.seqlen)
    p.add_argument("--calib-seed", type=int, default=D.calib_seed)
    p.add_argument("--batch-size", type=int, default=D.batch_size)
    p.add_argument("--dtype", default=D.dtype)
    p.add_argument("--device", default=D.device)
    p.add_argument("--cache-dir", default=None)


def run(args) -> int:
    from gpsearch import api

    s = AllocateSettings(
        tree=args.tree, also_trees=args.also_trees, p_tree=args.p_tree,
        sparsity=args.sparsity, model=args.model, data=args.data,
        nsamples=args.nsamples, seqlen=args.seqlen, calib_seed=args.calib_seed,
        batch_size=args.batch_size, step=args.step, max_shift=args.max_shift,
        generations=args.generations, offspring=args.offspring, max_moves=args.max_moves,
        split_max=args.split_max, p_split=args.p_split, init=args.init,
        fitness=args.fitness, stages=args.stages, topk=args.topk, seed=args.seed,
        time_budget=args.time_budget, test_windows=args.test_windows,
        test_uniform=not args.skip_uniform_test, dtype=args.dtype,
        device=args.device, cache_dir=args.cache_dir)
    res = api.allocate(s, out=args.out, resume=args.resume)
    r = res["rows"]
    print(f"validation {res['val_score']['fitness']}: uniform {res['val_score']['uniform']:.4f}, "
          f"searched {res['val_score']['searched']:.4f}")
    uni = f"uniform {r['uniform']['ppl']:.3f}, " if "uniform" in r else ""
    if "uniform, chosen tree" in r:
        uni += f"chosen tree uniform {r['uniform, chosen tree']['ppl']:.3f}, "
    if len(res["pool"]) > 1:
        print(f"chosen tree (of {len(res['pool'])}): {res['tree']}")
    print(f"test PPL ({res['test']['split']}, {res['test']['max_windows']} windows): {uni}"
          f"searched {r['searched']['ppl']:.3f} (achieved sparsity "
          f"{r['searched']['achieved_sparsity']:.4f})")
    print(f"allocation: {res['run_dir']}/best_allocation.json")
    return 0
