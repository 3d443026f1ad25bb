"""Search for a pruning metric by genetic programming (DEAP). Fitness is the VALIDATION-split
score after pruning with the candidate tree (dense feature mode); duplicates are skipped before any
forward pass. Everything goes to a run directory (config.json, checkpoint.json after every
generation, log.jsonl, hall_of_fame.csv, best_tree.json, progress.png, summary.md); --resume
continues an interrupted run to the same result. At the end the best tree is compared with dense,
magnitude and Wanda on the TEST split. With no arguments it searches the embedded model and corpus
in about half an hour on 2 cores. (The application logic: ``gpsearch.jobs.search.run``.)"""

from __future__ import annotations

import argparse

from gpsearch.jobs.search.plan import DEFAULTS
from gpsearch.jobs.search.run import run_search

OPTS = {  # option -> (type, help)
    "model": (str, "the embedded model, a hub id, a local HF directory or a .gguf file"),
    "dtype": (str, "float32, bfloat16 or float16"),
    "device": (str, "cpu, cuda, cuda:N or auto"),
    "cache_dir": (str, "feature cache; none: ~/.cache/gpsearch or $GPSEARCH_CACHE"),
    "data": (str, "wiki (embedded), wikitext2, c4, or a local .txt/.jsonl file or folder"),
    "nsamples": (int, "calibration samples (features X, G)"),
    "seqlen": (int, "tokens per calibration sample and per evaluation window"),
    "calib_seed": (int, "calibration sampling seed"),
    "batch_size": (int, "calibration / evaluation batch size"),
    "max_windows": (int, "validation windows per fitness evaluation when --stages none"),
    "test_windows": (int, "test windows of the final report (0: the whole test split)"),
    "space": (str, "search space: a .yaml file or a name in search_spaces/"),
    "population": (int, "parents kept per generation (mu)"),
    "offspring": (int, "children per generation (lambda)"),
    "elite": (int, "best distinct trees always kept"),
    "tournament": (int, "tournament size"),
    "p_crossover": (float, "probability that a child comes from crossover"),
    "p_mutation": (float, "probability that a child comes from mutation"),
    "generations": (int, "generations after the initial one (a total: raise it to extend a run)"),
    "sparsity": (float, "fraction of weights set to zero"),
    "pattern": (str, "unstructured, 2:4, 4:8 (N:M)"),
    "scope": (str, "unstructured comparison group: row (Wanda) or matrix"),
    "seed": (int, "seed of the search (the same seed gives the same run)"),
    "workers": (int, "0/1: evaluate in this process; N > 1: N Ray actors"),
    "ray_address": (str, "join this Ray cluster ('auto' or HOST:PORT) instead of starting a "
                         "local Ray instance"),
    "eval_timeout": (float, "Ray: seconds before a candidate's worker is killed and the "
                            "candidate penalised"),
    "fitness": (str, "score of a stage: ppl (validation perplexity) or kl (mean KL divergence of "
                     "the next-token distribution to the dense model's)"),
    "stages": (str, "staged fitness TOKENS:FRACTION,...: every new candidate is scored on the "
                    "first stage's tokens, the best FRACTION of a generation's new candidates on "
                    "each later stage; 'none' = one stage of --max-windows windows"),
    "topk": (int, "KL fitness: dense next-token probabilities kept per token (the rest is one "
                  "tail bucket); memory tokens x K x 8 bytes"),
    "immigrants": (int, "children per generation that are new random trees (diversity)"),
    "init_population": (int, "trees evaluated in the initial generation, the best --population "
                             "survive (0: --population)"),
    "niches": (int, "survivor slots for the best tree of each set of inputs (W, X, G...) that "
                    "the elite does not read (diversity; 0: off)"),
    "hurdle": (float, "reject a new candidate before its first-stage evaluation when its cheap "
                      "proxy (output error of its masks on 3 decoder blocks, from the input "
                      "statistics) exceeds this many times Wanda's tree's (0: off)"),
    "refill": (int, "rounds of extra children a generation breeds while fewer than --offspring "
                    "of its children were evaluated (the rest hurdled or duplicates; 0: off)"),
    "lead_noise": (int, "1: the summary says whether the best tree's test-split lead over the "
                        "hand trees exceeds the calibration-seed noise (Wanda's tree at the next "
                        "seed); 0: off"),
    "report": (str, "methods beside the best tree and Wanda's tree on the test split, "
                    "comma-separated (e.g. magnitude,wanda,sparsegpt: wanda is block-sequential "
                    "Wanda, about 3 min here), trees (no other method) or none (no test "
                    "report)"),
    "tune": (int, "extended space: the best N trees' constants tuned by coordinate descent on "
                  "the first-stage fitness after the last generation (0: off)"),
    "report_update": (int, "the best N trees also on the test split with a weight update: "
                           "TREE+recon (least-squares reconstruction) and sparsegpt:TREE, beside "
                           "plain sparsegpt (about 10 min per tree for the embedded model on 2 "
                           "CPU cores; 0: off)"),
    "device_map": (str, "a model over several GPUs (accelerate): auto or balanced; with Ray, "
                        "over each actor's --gpus-per-worker GPUs (docs/memory.md)"),
    "gpus_per_worker": (int, "Ray on GPUs: GPUs per actor (N GPUs run N / k resident models; "
                             "k > 1 implies --device-map auto)"),
    "fitness_models": (str, "multi-condition fitness: the models scored, comma-separated, each as "
                            "its degradation relative to its own dense model (KL, or the PPL "
                            "ratio with --fitness ppl); '' = --model alone"),
    "fitness_rescale": (str, "multi-condition fitness: extra conditions with terminals rescaled "
                             "before the tree is evaluated, comma-separated, e.g. G=4,X=0.25 "
                             "(G=4+X=0.25 = both at once)"),
    "fitness_seeds": (str, "multi-condition fitness: extra conditions with the features of these "
                           "calibration seeds, comma-separated"),
    "fitness_nsamples": (str, "multi-condition fitness: extra conditions with the features of "
                              "these calibration sizes (samples), comma-separated, e.g. 32"),
    "fitness_reduce": (str, "multi-condition fitness: mean, or max (the worst condition on each "
                            "window)"),
    "transfer_model": (str, "the final test report also prunes this model with the best tree, "
                            "Wanda's tree and the hand-made trees (transfer)"),
    "allocation": (str, "layer-wise sparsity: uniform, owl (from each candidate's own scores) or "
                        "an allocation FILE.json (e.g. from gpsearch allocate); none = every "
                        "linear at --sparsity"),
    "owl_m": (float, "OWL outlier threshold, a multiple of a block's mean score"),
    "owl_lambda": (float, "OWL: block sparsities within the target +- lambda"),
    "final_trees": (int, "final stage: the best N trees of the hall of fame re-scored on "
                         "--final-windows validation windows; the best of them is the result "
                         "(0 = off: the last stage decides)"),
    "final_windows": (int, "final stage: validation windows (more than the last stage's)"),
    "funnel": (str, "after the run, its best trees, best seeds and the hand trees re-scored "
                    "under the conditions of funnels/NAME.json (or a path; e.g. default): the "
                    "reported tree must lead beyond noise under most of them (gpsearch funnel; "
                    "'' = off; auto = funnels/quick.json where it applies, else the summary "
                    "says why not)"),
    "pick_conditions": (str, "robust pick: the hall of fame re-scored on the ranking windows "
                             "under these conditions (comma-separated: nsamples=N, seed=N, "
                             "G=4, ...); the tree with the best worst-case (--pick-reduce) score "
                             "is the result; '' = off"),
    "pick_reduce": (str, "robust pick: max (the worst condition) or mean"),
    "robustness": (int, "summary: robustness (terminals x 0.25 and x 4) of this many best "
                        "trees on the first-stage windows; 0 = off"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    for name, (kind, help_text) in OPTS.items():
        shown = DEFAULTS[name] if DEFAULTS[name] is not None else "none"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"{help_text} (default {shown})")
    p.add_argument("--seed-trees", nargs="+", default=None, metavar="TREE",
                   help="warm start: tree files, names in trees/ or prefix expressions; 'known' "
                        "= the trees/ metrics that fit the space (at most half the population), "
                        "'none' = a cold start (default known)")
    p.add_argument("--out", default=None, help="run directory (default runs/search-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in this directory (its config is kept)")


def run(args) -> int:
    given = {k: getattr(args, k, None) for k in DEFAULTS}
    given["seed_trees"] = args.seed_trees
    run_search(given, out=args.out, resume=args.resume)
    return 0
