"""The plan of a search: the settings (``DEFAULTS`` in one visible place, the resumed run's,
the given ones), validated into a ``Plan`` before anything is written or loaded, its text for the
terminal and config.json, and the run directory's config record."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from gpsearch.allocation.levels import DEFAULT_OWL_LAMBDA, DEFAULT_OWL_M
from gpsearch.config import VERSION as __version__
from gpsearch.errors import UserError
from gpsearch.jobs.search import pick as search_pick
from gpsearch.model.load import EMBEDDED, check_placement

# Defaults in one visible place. The no-argument run on 2 cores, from an empty feature cache
# (README): model + features X, G ~6 min (the 32-sample ones on the way), a generation ~1.6 min
# (every candidate scored with 128- and 32-sample features; the hurdle before the fingerprints),
# tuning, test report, lead, robustness and funnel ~10 min: 7 generations after the initial one
# aim at 30 min.
DEFAULTS = {
    "model": EMBEDDED, "dtype": "float32", "device": "cpu", "cache_dir": None,
    "data": "wiki", "nsamples": 128, "seqlen": 256, "calib_seed": 0, "batch_size": 4,
    "max_windows": 8, "test_windows": 64,
    "space": "extended", "population": 16, "offspring": 16, "elite": 8, "tournament": 3,
    "p_crossover": 0.5, "p_mutation": 0.5, "generations": 7, "sparsity": 0.5,
    "pattern": "unstructured", "scope": "row", "seed": 0, "seed_trees": ["known"],
    "workers": 0, "ray_address": None, "eval_timeout": None, "report": "trees",
    "fitness": "kl", "stages": "512:1,2048:0.25", "topk": 512, "immigrants": 2,
    "init_population": 0, "niches": 0,
    # the hurdle: reject a candidate whose output-error proxy exceeds 1.25 x Wanda's tree's
    # before its first-stage evaluation (bench/hurdle.json: 41-50% rejected, none of the 50 best)
    "hurdle": 1.25,
    # refill: up to 3 more rounds of children in a generation whose children were hurdled or
    # duplicates, so that the hurdle buys candidates, not a shorter run
    "refill": 3,
    "tune": 2, "device_map": None, "gpus_per_worker": 1, "report_update": 0,
    # multi-condition fitness (search/conditions.py, workers/multi.py): "" = off
    "fitness_models": "", "fitness_rescale": "", "fitness_seeds": "", "fitness_nsamples": "32",
    "fitness_reduce": "mean",
    "transfer_model": None, "robustness": 2,
    # the summary's lead vs noise (search/lead.py): the hand trees and Wanda's tree at the next
    # calibration seed on the test split (0 = off)
    "lead_noise": 1,
    # layer-wise sparsity (allocation_run): None = every linear at --sparsity
    "allocation": None, "owl_m": DEFAULT_OWL_M, "owl_lambda": DEFAULT_OWL_LAMBDA,
    # the final stage: the best N hall-of-fame trees re-scored on more windows (0 = off)
    "final_trees": 0, "final_windows": 64,
    # the robust pick (search_pick): the hall of fame re-scored under these conditions; the best
    # worst-case (or mean) score is the result ("" = off: the search's own ranking decides)
    "pick_conditions": "", "pick_reduce": "max",
    # the funnel after the run (jobs/funnel.py): funnels/NAME.json or a path; "" = off. It can
    # replace the reported tree by its seed or a hand tree whose lead holds beyond noise.
    # "auto": funnels/quick.json where it applies (uniform sparsity, a resident model), else the
    # summary says why it did not run (FUNNEL_AUTO)
    "funnel": "auto",
}
AUTO_FUNNEL = "quick"  # the funnel file that --funnel auto runs,
AUTO_FUNNEL_WINDOWS = 4  # on this many validation windows (at most the run's last stage's),
AUTO_FUNNEL_TOP = 2  # with this many hall-of-fame trees: the README run's 30 minutes
# What a run directory written before these settings existed ran with (kept on --resume).
LEGACY = {"fitness": "ppl", "stages": "none", "topk": 512, "immigrants": 0, "tune": 0,
          "init_population": 0, "niches": 0, "hurdle": 0.0, "refill": 0,
          "allocation": None, "final_trees": 0, "pick_conditions": "", "fitness_nsamples": "",
          "funnel": ""}
RUNTIME_ONLY = {"generations", "report", "report_update", "tune", "test_windows", "workers",
                "ray_address", "eval_timeout",
                "cache_dir", "device_map", "gpus_per_worker",  # placement: results unchanged
                "transfer_model", "robustness", "lead_noise"}  # final report only


def resolve_settings(given: dict, saved: dict | None = None) -> dict:
    """Option values: explicit ones (``given``, None = not given), else the saved run's (resume),
    else DEFAULTS. Unknown names are a user error."""
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown search settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in given.items() if v is not None}
    if saved is None:
        return {**DEFAULTS, **given}
    for k, v in given.items():
        if k not in RUNTIME_ONLY and v != saved.get(k):
            raise UserError(f"--{k.replace('_', '-')} {v} differs from the run's {saved.get(k)}: "
                            "a resumed run keeps its configuration")
    return {**DEFAULTS, **LEGACY, **saved, **given}


@dataclass
class Plan:
    """Everything a run needs, validated before anything is written or loaded."""

    settings: dict
    space: object
    search: object
    registry: object
    seeds: list
    sparsity: float
    pattern: object
    calib: object
    ev: object
    conditions: list = dataclasses.field(default_factory=list)  # multi-condition fitness
    allocation: object = None  # allocation_run.AllocationSpec, None: uniform --sparsity

    def save_tree(self, expr: str, path) -> None:
        from gpsearch.tree import parse_prefix, save_tree

        save_tree(parse_prefix(expr, self.registry), path)


def plan(settings: dict, saved: dict | None = None) -> Plan:
    """Validate the settings; ``saved``: a resumed run's config (its space and seed trees)."""
    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.engine.loop import SearchConfig
    from gpsearch.engine.space import SearchSpace, load_space
    from gpsearch.engine.variation import VariationConfig
    from gpsearch.pruning.masks import check_sparsity, parse_pattern
    from gpsearch.tree import EXTENDED, PRUNERZERO

    s = settings
    space = SearchSpace.from_dict(saved["space"]) if saved else load_space(s["space"])
    registry = {"prunerzero": PRUNERZERO, "extended": EXTENDED}[space.registry]
    for name, arity in space.arities().items():
        if not registry.is_op(name) or registry.op(name).arity != arity:
            raise UserError(f"search space {space.name}: {name}/{arity} is not an operator of "
                            f"the {registry.name} registry")
    if not set(space.terminals) <= set(registry.terminals):
        raise UserError(f"search space {space.name}: terminals outside {registry.terminals}")
    from gpsearch.fitness.stages import parse_stages

    sparsity = check_sparsity(s["sparsity"])
    staged = str(s["stages"]).strip().lower() not in ("", "none")
    stages = parse_stages(s["stages"], s["seqlen"]) if staged else []
    if s["fitness"] not in ("ppl", "kl"):
        raise UserError(f"--fitness must be ppl or kl (got {s['fitness']!r})")
    if s["topk"] < 1:
        raise UserError(f"--topk must be at least 1 (got {s['topk']})")
    pattern = parse_pattern(s["pattern"], sparsity, s["scope"])
    allocation = _allocation_spec(s, pattern)
    if s.get("funnel"):  # a bad funnel file fails now, not after the search
        from gpsearch.jobs.funnel_spec import read_spec

        if not isinstance(s["funnel"], str):
            raise UserError(f"--funnel must be a funnel name or file (got {s['funnel']!r})")
        read_spec(AUTO_FUNNEL if s["funnel"] == "auto" else s["funnel"])
    if not isinstance(s["hurdle"], (int, float)) or isinstance(s["hurdle"], bool):
        raise UserError(f"--hurdle must be a number (got {s['hurdle']!r})")
    if not isinstance(s["refill"], int) or isinstance(s["refill"], bool) or s["refill"] < 0:
        raise UserError(f"--refill must be a whole number of rounds, 0 or more "
                        f"(got {s['refill']!r})")
    search = SearchConfig(population=s["population"], offspring=s["offspring"],
                          elite=min(s["elite"], s["population"]), seed=s["seed"],
                          stages=tuple((st.windows, st.fraction) for st in stages),
                          fitness=s["fitness"], immigrants=min(s["immigrants"], s["offspring"]),
                          init_population=s["init_population"], niches=s["niches"],
                          hurdle=float(s["hurdle"]), refill=s["refill"],
                          variation=VariationConfig(p_crossover=s["p_crossover"],
                                                    p_mutation=s["p_mutation"],
                                                    tournament=s["tournament"]))
    if s["generations"] < 0 or s["test_windows"] < 0 or s["max_windows"] < 1:
        raise UserError("need --generations >= 0, --max-windows >= 1 and --test-windows >= 0")
    if (s.get("report_update") or 0) < 0 or (s.get("tune") or 0) < 0:
        raise UserError("need --report-update >= 0 and --tune >= 0")
    if s.get("eval_timeout") is not None and not s["eval_timeout"] > 0:
        raise UserError(f"--eval-timeout must be a positive number of seconds "
                        f"(got {s['eval_timeout']})")
    check_placement(s.get("device_map"),
                    (1 if s.get("gpus_per_worker") is None else s["gpus_per_worker"]))
    seeds = saved["seed_exprs"] if saved else _seeds(s["seed_trees"], registry, space,
                                                     s["population"])
    calib = CalibConfig(data=s["data"], nsamples=s["nsamples"], seqlen=s["seqlen"],
                        seed=s["calib_seed"], batch_size=s["batch_size"])
    last = stages[-1].windows if stages else s["max_windows"]
    if s["final_trees"] < 0 or (s["final_trees"] and s["final_windows"] <= last):
        raise UserError(f"--final-trees must be >= 0 and --final-windows above the last stage's "
                        f"{last} windows (got {s['final_trees']}, {s['final_windows']})")
    if s["final_trees"] and not stages:
        raise UserError("--final-trees re-scores the last stage's best trees: it needs --stages")
    ev = EvalConfig(data=s["data"], split="validation", seqlen=s["seqlen"],
                    max_windows=max(last, s["final_windows"]) if s["final_trees"] else last,
                    batch_size=s["batch_size"])
    from gpsearch.engine.conditions import fitness_conditions

    if s["fitness_reduce"] not in ("mean", "max"):
        raise UserError(f"--fitness-reduce must be mean or max (got {s['fitness_reduce']!r})")
    from gpsearch.jobs.search.pick import REDUCERS, pick_conditions

    pick_conditions(s["pick_conditions"])  # a bad list fails before anything loads
    if s["pick_reduce"] not in REDUCERS:
        raise UserError(f"--pick-reduce must be max or mean (got {s['pick_reduce']!r})")
    if s["robustness"] < 0:
        raise UserError(f"--robustness must be 0 or more trees (got {s['robustness']})")
    conditions = fitness_conditions(s["fitness_models"], s["fitness_rescale"], s["fitness_seeds"],
                                    s["model"], s.get("fitness_nsamples", ""), s["nsamples"])
    p = Plan(s, space, search, registry, seeds, sparsity, pattern, calib, ev,
             conditions if len(conditions) > 1 or conditions[0].label() != "baseline" else [],
             allocation)
    build_searcher(p, backend=None)  # seed trees checked against the space now
    _check_resources(s)
    return p


def _allocation_spec(s: dict, pattern):
    from gpsearch.allocation.apply import check_pattern, parse_spec

    spec = parse_spec(s.get("allocation"), s["owl_m"], s["owl_lambda"])
    check_pattern(spec, pattern)
    return spec


def _allocation_record(spec) -> dict | None:
    """config.json: the allocation spec, and a file's allocation itself (the run keeps it)."""
    if spec is None:
        return None
    if spec.kind != "file":
        return spec.to_dict()
    from gpsearch.allocation.file import allocation_json, read_allocation
    from gpsearch.io import relative_path

    return {**spec.to_dict(), "path": relative_path(spec.path),
            "file": allocation_json(read_allocation(spec.path))}


def allocation_text(p: Plan, record: bool = False) -> str:
    """``record``: for config.json (a file's path relative to the repository when inside it)."""
    from gpsearch.io import relative_path

    a = p.allocation
    if a is None:
        return ""
    if a.kind == "owl":
        return (f"; layer-wise sparsity: OWL from each candidate's own scores (M {a.owl_m:g}, "
                f"lambda {a.owl_lambda:g})")
    return f"; layer-wise sparsity: {(relative_path(a.path) if record else a.path) or a.kind}"


def fitness_text(p: Plan, record: bool = False) -> str:
    s, seqlen = p.settings, p.ev.seqlen
    what = "validation perplexity" if s["fitness"] == "ppl" else \
        f"KL to the dense model (top-{s['topk']} + tail)"
    if not p.search.stages:
        return (f"{what} on {p.ev.max_windows} windows x {seqlen} tokens, dense features"
                f"{conditions_text(p)}{allocation_text(p, record)}"
                f"{search_pick.pick_text(p.settings)}")
    parts = ", ".join(f"{w * seqlen} tokens for {f:.0%}" for w, f in p.search.stages)
    if s["final_trees"] > 1:
        parts += (f"; final stage: the best {s['final_trees']} trees on "
                  f"{s['final_windows'] * seqlen} tokens")
    return (f"{what}, dense features, in stages ({parts} of each generation's new candidates); "
            f"selection on the first stage, hall of fame on the last{conditions_text(p)}"
            f"{allocation_text(p, record)}{search_pick.pick_text(p.settings)}")


def conditions_text(p: Plan) -> str:
    if not p.conditions:
        return ""
    how = "mean" if p.settings["fitness_reduce"] == "mean" else "worst (max)"
    return (f"; multi-condition: per window, the {how} over {len(p.conditions)} conditions ("
            f"{', '.join(c.label() for c in p.conditions)}), each relative to its own dense "
            f"model (KL, or NLL minus the dense NLL: 'ppl' is then the PPL ratio to dense)")


def _check_resources(s: dict) -> None:
    """Cheap checks of dtype, device and data spec (a missing corpus fails in a second, not
    after the model has loaded); the backend, built before the run directory, checks the rest."""
    from gpsearch.model.data import load_texts
    from gpsearch.model.load import resolve_device, resolve_dtype

    resolve_dtype(s["dtype"])
    resolve_device(s["device"])
    load_texts(s["data"], "calibration")


def _seeds(specs: list, registry, space, population: int) -> list[str]:
    from gpsearch.tree import TREES_DIR, load_tree, to_prefix

    out = []
    for spec in specs:
        if spec == "known":
            known = []
            for path in sorted(TREES_DIR.glob("*.json")):
                try:
                    text = to_prefix(load_tree(str(path), registry))
                except UserError:  # a tree outside this registry
                    continue
                names = {t.strip() for t in text.replace("(", ",").replace(")", ",").split(",")}
                if names - {""} <= set(space.names()):
                    known.append(text)
            out += known[:max(population // 2, 1)]
        elif spec != "none":
            out.append(to_prefix(load_tree(spec, registry)))
    return list(dict.fromkeys(out))


def build_searcher(p: Plan, backend):
    from gpsearch.engine.loop import Searcher
    from gpsearch.pruning.fingerprint import ExprServices

    services = ExprServices(p.registry, p.sparsity, p.pattern)
    return Searcher(p.space, backend, p.search, services, p.seeds)


def run_config(p: Plan) -> dict:
    """config.json of a new run: its settings, what they resolve to, and the code's commit."""
    from gpsearch.io import code_version

    return {"settings": p.settings, "search": p.search.to_dict(), "space": p.space.to_dict(),
            "seed_exprs": p.seeds, "calibration": p.calib.to_dict(),
            "conditions": [c.to_dict() for c in p.conditions],
            "allocation": _allocation_record(p.allocation),
            "evaluation": p.ev.to_dict(), "fitness": fitness_text(p, record=True),
            "gpsearch_version": __version__, **code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
