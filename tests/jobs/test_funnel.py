"""The funnel over a search run directory, on a tiny random LLaMA and a local corpus: every
finalist under every condition in funnel.json, the rule applied to the recorded numbers, a tree
that does not lead beyond noise not reported, hostile funnel files and run directories refused."""

import csv
import json
from pathlib import Path

import pytest
import torch

from gpsearch import api
from gpsearch.cli import build_parser, main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.engine.funnel import select
from gpsearch.errors import UserError
from gpsearch.jobs.funnel import FunnelConfig, check, run_funnel
from gpsearch.jobs.funnel_run import read_run
from gpsearch.jobs.funnel_spec import read_spec
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama, write_corpus

ROOT = Path(__file__).resolve().parents[2]
WANDA = "mul(W, sqrt(X))"
SAME_AS_WANDA = "mul(sqr(W), X)"  # the square of Wanda's score: exactly its masks


def calib_of(corpus):
    return CalibConfig(data=corpus, nsamples=4, seqlen=16, seed=0, batch_size=2)


def write_run(path: Path, corpus: str, hof: list[str], seeds: list[tuple[str, float]],
              children: list[tuple[str, list[str]]] = (), model: str = "tiny",
              conditions: list[str] = ("baseline",), cache_dir=None, summary: bool = True):
    """A run directory in the search's own format (config.json, hall_of_fame.csv, log.jsonl,
    summary.md): ``hof`` trees ranked in order, ``seeds`` (expr, first-stage fitness) and
    ``children`` (expr, parents) in the log."""
    path.mkdir(parents=True)
    calib = calib_of(corpus)
    cfg = {"settings": {"model": model, "dtype": "float32", "device": "cpu",
                        "cache_dir": cache_dir, "data": corpus, "sparsity": 0.5,
                        "pattern": "unstructured", "scope": "row", "allocation": None},
           "space": {"name": "extended", "registry": "extended"},
           "seed_exprs": [s for s, _ in seeds],
           "calibration": calib.to_dict(),
           "conditions": [{"label": c} for c in conditions],
           "evaluation": {"data": corpus, "split": "validation", "seqlen": 16, "max_windows": 2,
                          "batch_size": 2}, "commit": "abc", "dirty": False}
    (path / "config.json").write_text(json.dumps(cfg))
    with open(path / "hall_of_fame.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["rank", "fitness", "ppl", "size", "generation", "expression", "key"])
        for i, e in enumerate(hof, 1):
            w.writerow([i, 1.0 + i / 100, 2.0, 5, 1, e, e])
    with open(path / "log.jsonl", "w") as f:
        for e, fit in seeds:
            f.write(json.dumps({"gen": 0, "expr": e, "fitness": fit + 1, "op": "seed",
                                "parents": [], "stages": [{"windows": 1, "score": fit}]}) + "\n")
        for e, parents in children:
            f.write(json.dumps({"gen": 1, "expr": e, "fitness": 1.0, "op": "mutation",
                                "parents": parents}) + "\n")
    if summary:
        (path / "summary.md").write_text("# done\n")
    return path


def write_funnel(path: Path, **changes) -> str:
    data = {"format": "gpsearch-funnel", "version": 1,
            "conditions": [{"condition": "sparsity=0.6"}, {"condition": "pattern=2:4"},
                           {"condition": "seed=1"}, {"condition": "nsamples=2"},
                           {"condition": "baseline", "text": "held-apart"}],
            "hand_trees": ["wanda", "gblm"], "noise": {"tree": "wanda", "seeds": [1]},
            "majority": 0.5, **changes}
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def evaluator(tokenizer, corpus, tmp_path, one_thread):
    return Evaluator(calib=calib_of(corpus), cache_dir=tmp_path / "cache",
                     lm=loaded(make_llama(), tokenizer))


def test_the_default_funnel_file_declares_the_wider_conditions():
    spec = read_spec("default")
    assert [c.label() for c in spec.conditions] == [
        "sparsity=0.6", "sparsity=0.7", "pattern=2:4", "nsamples=32", "seed=1",
        "text=held-apart"]
    assert spec.hand_trees == ("wanda", "gblm", "ria_sqrt") and spec.noise_seeds == (1,)
    assert spec.noise_floor == 0.001 and spec.majority == 0.5
    assert read_spec(str(ROOT / "funnels" / "default.json")).conditions == spec.conditions


def test_the_committed_default_search_gives_its_finalists_and_seeds():
    """bench/default_search, read without a model: the hand trees are also its seeds, each top
    tree's seed is the best seed it descends from, and nsamples=32 (its fitness) does not vote."""
    from gpsearch.jobs.funnel import _votes

    spec, run, fins, base = check(FunnelConfig(run_dir=str(ROOT / "bench/default_search")))
    by = {f["name"]: f for f in fins}
    assert list(by)[:3] == ["wanda", "gblm", "ria_sqrt"]
    assert by["ria_sqrt"]["roles"] == ["hand", "seed"] and by["ria_sqrt"]["aliases"] == ["seed1"]
    assert by["hof1"]["expr"] == ("mul(add(coln(W), rown(add(coln(W), add(rcn(W), rown(W))))), "
                                  "sqrt(X))")
    # both top trees descend from the RIA-style seed (log.jsonl: 100% of the last population)
    assert by["hof1"]["seed"] == "ria_sqrt" and by["hof2"]["seed"] == "ria_sqrt"
    assert all(by[f["seed"]]["kind"] in ("hand", "seed") for f in fins if f["kind"] == "searched")
    assert run.ev.max_windows == 8 and run.cache_dir is None  # "<cache>" is not a path
    votes = {fc.label(): _votes(fc, run, base) for fc in spec.conditions}
    assert votes["nsamples=32"] == "part of the run's fitness"
    assert [k for k, v in votes.items() if v is None] == [
        "sparsity=0.6", "sparsity=0.7", "pattern=2:4", "seed=1", "text=held-apart"]


def test_a_tree_bred_from_two_seeds_is_judged_against_the_better_one(tmp_path):
    """A copy of bench/default_search whose top tree's first log record names GBLM and the RIA
    qrt seed as parents: its seed is GBLM, the better of the two on the first stage."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ROOT / "bench/default_search", run)
    hof1 = "mul(add(coln(W), rown(add(coln(W), add(rcn(W), rown(W))))), sqrt(X))"
    parents = ["mul(add(coln(W), rown(W)), qrt(X))", "add(mul(W, sqrt(X)), mul(W, G))"]
    lines = (run / "log.jsonl").read_text().splitlines()
    first = next(i for i, x in enumerate(lines) if json.loads(x)["expr"] == hof1)
    lines[first] = json.dumps({**json.loads(lines[first]), "parents": parents})
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    _, _, fins, _ = check(FunnelConfig(run_dir=str(run)))
    by = {f["name"]: f for f in fins}
    assert by["hof1"]["expr"] == hof1 and by["hof1"]["seed"] == "gblm"
    assert by["hof2"]["seed"] == "ria_sqrt"


def test_funnel_writes_every_finalist_under_every_condition(evaluator, corpus, tmp_path):
    run = write_run(tmp_path / "run", corpus, hof=["add(mul(W, sqrt(X)), mul(W, G))", "W"],
                    seeds=[(WANDA, 1.0), ("mul(W, X)", 1.1)],
                    children=[("W", ["mul(W, X)"])], conditions=["baseline", "nsamples=2"])
    before = {n: lin.weight.clone() for n, lin in evaluator.linears.items()}
    rec = api.funnel(run_dir=str(run), conditions=write_funnel(tmp_path / "f.json"),
                     evaluator=evaluator, progress=False)
    got = json.loads((run / "funnel.json").read_text())
    labels = ["searched", "sparsity=0.6", "pattern=2:4", "seed=1", "nsamples=2",
              "text=held-apart"]
    assert [c["label"] for c in got["conditions"]] == labels
    names = [f["name"] for f in got["finalists"]]
    # hof1 is GBLM (a hand tree); W's seed is mul(W, X) (seed2), not the best seed
    assert names == ["wanda", "gblm", "seed2", "hof2"]
    assert next(f for f in got["finalists"] if f["name"] == "gblm")["aliases"] == ["hof1"]
    assert next(f for f in got["finalists"] if f["name"] == "hof2")["seed"] == "seed2"
    for f in got["finalists"]:
        assert set(f["ppl"]) == set(labels) and all(p > 1 for p in f["ppl"].values()), f
    assert got["voting"] == ["sparsity=0.6", "pattern=2:4", "seed=1", "text=held-apart"]
    assert next(c for c in got["conditions"] if c["label"] == "nsamples=2")["why_not"] == \
        "part of the run's fitness"
    # the held-apart windows are the split's last 2, after every window the run scored
    wins = got["evaluation"]["windows"]
    assert wins[f"{corpus}:search"]["range"] == [0, 2]
    lo, hi = wins[f"{corpus}:held-apart"]["range"]
    total = evaluator.windows(EvalConfig(data=corpus, split="validation", seqlen=16)).shape[0]
    assert hi - lo == 2 and lo >= 2 and hi == total
    # noise: Wanda's PPL with calibration seed 0 against seed 1, under each condition
    for lb in labels:
        n = got["noise"]["by_condition"][lb]
        assert set(n["ppl_by_seed"]) == {"0", "1"}
        p0, p1 = n["ppl_by_seed"]["0"], n["ppl_by_seed"]["1"]
        own, other = (p1, p0) if lb == "seed=1" else (p0, p1)
        assert n["noise"] == pytest.approx(max(0.001, abs(other / own - 1)))
    wanda = next(f for f in got["finalists"] if f["name"] == "wanda")["ppl"]
    assert wanda["seed=1"] == got["noise"]["by_condition"]["seed=1"]["ppl_by_seed"]["1"]
    # the reported tree is the rule's choice on the recorded numbers
    again = select([{"name": f["name"], "kind": f["kind"], "size": f["size"],
                     "seed": f.get("seed"), "ppl": f["ppl"]} for f in got["finalists"]],
                   got["voting"], {lb: got["noise"]["by_condition"][lb]["noise"]
                                   for lb in got["voting"]})
    assert got["reported"]["name"] == again["reported"] == rec["reported"]["name"]
    assert got["verdict"] == again["verdict"]
    hand = got["selection"]["strongest_hand"]
    for f in got["finalists"]:
        for lb in labels:
            assert f["margin"][lb] == pytest.approx(1 - f["ppl"][lb] / next(
                g for g in got["finalists"] if g["name"] == hand)["ppl"][lb])
    assert got["commit"] and "dirty" in got and got["calibration"]["data"] == corpus
    assert json.loads((run / "funnel_conditions.json").read_text()) == json.loads(
        (tmp_path / "f.json").read_text())
    md = (run / "funnel.md").read_text()
    assert "| tree | kind | size | searched * |" in md and "nsamples=2 *" in md
    assert got["verdict"][1:] in md and "### Why" in md
    assert all(torch.equal(before[n], lin.weight) for n, lin in evaluator.linears.items())
    # held-apart: Wanda pruned by hand and measured on the split's last 2 windows
    from gpsearch.fitness.perplexity import perplexity
    from gpsearch.pruning.masks import parse_pattern
    from gpsearch.tree import load_tree

    full = evaluator.windows(EvalConfig(data=corpus, split="validation", seqlen=16))
    evaluator.apply_masks(evaluator.compute_masks(load_tree("wanda"), 0.5,
                                                  parse_pattern("unstructured")))
    direct = perplexity(evaluator.model, full[-2:], 2)["ppl"]
    evaluator.restore()
    assert wanda["text=held-apart"] == pytest.approx(direct, rel=1e-9)
    assert wanda["text=held-apart"] != wanda["searched"]


def test_a_tree_with_the_masks_of_a_hand_tree_is_not_reported(evaluator, corpus, tmp_path):
    """The square of Wanda's score prunes exactly what Wanda prunes: no lead under any
    condition, so Wanda (the hand tree) is reported, and the output says why."""
    run = write_run(tmp_path / "run", corpus, hof=[SAME_AS_WANDA], seeds=[(WANDA, 1.0)],
                    children=[(SAME_AS_WANDA, [WANDA])])
    rec = run_funnel(FunnelConfig(run_dir=str(run), conditions=write_funnel(
        tmp_path / "f.json", hand_trees=["wanda"])), evaluator=evaluator, progress=False)
    hof = next(f for f in rec["finalists"] if f["name"] == "hof1")
    wanda = next(f for f in rec["finalists"] if f["name"] == "wanda")
    assert hof["ppl"] == wanda["ppl"] and hof["seed"] == "wanda"  # its seed is the hand tree
    assert rec["reported"]["name"] == "wanda" and rec["reported"]["kind"] == "hand"
    assert rec["verdict"].startswith("no tree beat the hand tree wanda beyond noise")
    assert "No tree beat the hand tree wanda beyond noise" in (run / "funnel.md").read_text()
    assert [(r["against"], r["wins"]) for r in rec["selection"]["decisions"][0]["against"]] \
        == [("wanda", 0)]


def test_a_tree_that_leads_everywhere_is_reported(evaluator, corpus, tmp_path):
    """A hand tree that cannot be scored (a constant) loses every condition: the searched tree
    leads it beyond any noise and is reported; the failure is recorded, not raised."""
    run = write_run(tmp_path / "run", corpus, hof=[WANDA], seeds=[])
    rec = run_funnel(FunnelConfig(run_dir=str(run), conditions=write_funnel(
        tmp_path / "f.json", hand_trees=["c1"])), evaluator=evaluator, progress=False)
    assert rec["reported"] == {"name": "hof1", "expr": WANDA, "kind": "searched"}
    assert rec["verdict"].startswith("hof1 is reported: it beat c1")
    const = next(f for f in rec["finalists"] if f["name"] == "c1")
    assert all(p is None for p in const["ppl"].values()) and "constant" in const["errors"][
        "searched"]


HOSTILE = [
    ("not json", "{'format': 1}", "not valid JSON"),
    ("a list", "[1, 2]", "must be a JSON object"),
    ("deep", "[" * 100_000 + "]" * 100_000, "larger than|nested too deeply|not valid JSON"),
    ("code", {"conditions": [{"condition": "__import__('os').system('true')"}]}, "NAME=VALUE"),
    ("unknown key", {"exec": "rm -rf /"}, "unknown key"),
    ("format", {"format": "pickle"}, "needs \"format\""),
    ("model", {"conditions": [{"condition": "model=/tmp/x"}]}, "model cannot be changed"),
    ("factor", {"conditions": [{"condition": "G=-1"}]}, "not a number|positive"),
    ("sparsity", {"conditions": [{"condition": "sparsity=2"}]}, "sparsity must be in"),
    ("pattern", {"conditions": [{"condition": "pattern=7"}]}, "unknown pattern"),
    ("text", {"conditions": [{"condition": "seed=1", "text": "/etc/passwd"}]}, "text must be"),
    ("baseline", {"conditions": [{"condition": "baseline"}]}, "always scored"),
    ("twice", {"conditions": [{"condition": "seed=1"}, {"condition": "seed=1"}]}, "twice"),
    ("empty", {"conditions": []}, "1 to 32"),
    ("hand", {"hand_trees": ["no_such_tree"]}, "hand_trees"),
    ("hand twice", {"hand_trees": ["wanda", WANDA]}, "same tree"),
    ("seeds", {"noise": {"seeds": [True]}}, "noise.seeds"),
    ("floor", {"noise": {"floor": float("nan")}}, "not valid JSON|noise.floor"),
    ("majority", {"majority": 0.3}, "majority"),
    ("noise seed", {"noise": {"seeds": [0]}}, "other than the run's"),  # the run's own seed
]


@pytest.mark.parametrize("name,content,match", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_funnel_file_is_refused_before_anything_loads(name, content, match, corpus,
                                                                tmp_path):
    run = write_run(tmp_path / "run", corpus, hof=[WANDA], seeds=[], model="/no/such/model")
    path = tmp_path / "f.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_funnel(path, **content)
    with pytest.raises(UserError, match=match) as e:
        api.funnel(run_dir=str(run), conditions=str(path), progress=False)
    assert "\n" not in str(e.value)
    assert not any((run / n).exists() for n in ("funnel.json", "funnel.md",
                                                 "funnel_conditions.json"))


def test_bad_run_directories_and_options_are_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="not found"):
        api.funnel(run_dir=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="RUN_DIR"):
        api.funnel()
    unfinished = write_run(tmp_path / "u", corpus, hof=[WANDA], seeds=[], summary=False)
    with pytest.raises(UserError, match="has not finished"):
        read_run(unfinished)
    run = write_run(tmp_path / "run", corpus, hof=[WANDA], seeds=[])
    with pytest.raises(UserError, match="--top"):
        api.funnel(run_dir=str(run), top=0)
    with pytest.raises(UserError, match="no such funnel file"):
        api.funnel(run_dir=str(run), conditions="nope")
    (run / "hall_of_fame.csv").write_text("rank,expression\n1,open('/etc/passwd')\n")
    with pytest.raises(UserError, match="hall_of_fame.csv"):
        api.funnel(run_dir=str(run))
    (run / "hall_of_fame.csv").write_text("rank,expression\n")
    with pytest.raises(UserError, match="no trees"):
        api.funnel(run_dir=str(run))
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "calibration": {"nsamples": "4"}}))
    with pytest.raises(UserError, match="calibration"):
        read_run(run)
    (run / "config.json").write_text(json.dumps(
        {**cfg, "settings": {**cfg["settings"], "allocation": "owl"}}))
    with pytest.raises(UserError, match="allocation"):
        read_run(run)


def test_a_condition_that_cannot_apply_to_the_run_is_refused(corpus, tmp_path):
    run = write_run(tmp_path / "run", corpus, hof=[WANDA], seeds=[])
    cfg = json.loads((run / "config.json").read_text())
    cfg["settings"]["pattern"] = "2:4"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="sparsity=0.6 cannot apply to this run"):
        api.funnel(run_dir=str(run))


def test_cli_funnel_on_a_saved_model(tmp_path, tokenizer, capsys):
    model_dir = tmp_path / "model"
    make_llama().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = write_run(tmp_path / "run", corpus, hof=[SAME_AS_WANDA, "W"], seeds=[(WANDA, 1.0)],
                    model=str(model_dir), cache_dir=str(tmp_path / "cache"))
    conds = write_funnel(tmp_path / "f.json", conditions=[{"condition": "pattern=2:4"},
                                                          {"condition": "seed=1"}],
                         hand_trees=["wanda"])
    assert main(["funnel", str(run), "--conditions", conds, "--top", "1", "--seeds", "1",
                 "--max-windows", "2"]) == 0
    out = capsys.readouterr().out
    got = json.loads((run / "funnel.json").read_text())
    assert [f["name"] for f in got["finalists"]] == ["wanda", "hof1"]  # --top 1
    assert got["evaluation"]["max_windows"] == 2 and got["model"] == str(model_dir)
    assert "No tree beat the hand tree wanda beyond noise" in out
    assert main(["funnel", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpsearch funnel: error:") and "\n" not in err


def test_cli_defaults_are_the_api_defaults():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["funnel"]
    d = {a.dest: a.default for a in sub._actions}
    cfg = api.FunnelConfig()
    for k in ("conditions", "top", "seeds", "max_windows", "device", "cache_dir"):
        assert d[k] == getattr(cfg, k), k
    assert api.FunnelConfig is FunnelConfig and callable(api.funnel)


def test_the_tree_the_search_reported_is_a_finalist(corpus, tmp_path):
    """best_tree.json (here: a constant-tuned tree the hall of fame does not hold) is scored as
    the finalist "reported"; a best_tree.json that is a hall-of-fame tree adds nothing."""
    from gpsearch.tree import EXTENDED, parse_prefix, save_tree

    tuned = "add(mul(W, sqrt(powr(X, c0.9))), mul(W, G))"
    run = write_run(tmp_path / "run", corpus, hof=["mul(W, X)"], seeds=[(WANDA, 1.0)],
                    children=[("mul(W, X)", [WANDA])])
    save_tree(parse_prefix(tuned, EXTENDED), run / "best_tree.json")
    _, r, fins, _ = check(FunnelConfig(run_dir=str(run), conditions=write_funnel(tmp_path / "f")))
    assert r.reported == tuned
    by = {f["name"]: f for f in fins}
    assert by["reported"]["expr"] == tuned and by["reported"]["kind"] == "searched"
    assert by["reported"]["seed"] == "wanda"  # the run's best seed: the log has no tuned tree
    save_tree(parse_prefix("mul(W, X)", EXTENDED), run / "best_tree.json")
    _, _, fins, _ = check(FunnelConfig(run_dir=str(run), conditions=write_funnel(tmp_path / "f")))
    assert "reported" not in {f["name"] for f in fins}
    (run / "best_tree.json").write_text('{"name": "__import__(\'os\')"}')
    with pytest.raises(UserError, match="best_tree.json"):
        check(FunnelConfig(run_dir=str(run), conditions=write_funnel(tmp_path / "f")))
