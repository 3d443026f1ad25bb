"""baselines/*.yaml recipes: parsed and checked by gpsearch, run by compare under one config."""

import inspect
from pathlib import Path

import pytest
import yaml

from gpsearch.cli import main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.errors import UserError
from gpsearch.jobs.compare import registry
from gpsearch.jobs.compare.registry import register
from gpsearch.jobs.compare.run import CompareConfig, plan, run_compare
from gpsearch.methods.recipes import BASELINES_DIR, load_recipe
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama

EXPECTED = {"magnitude", "wanda", "wanda-variant", "sparsegpt", "sparsegpt-extreme", "iterative",
            "shortgpt", "slimgpt", "width-taylor", "width-wanda", "tiers"}


def test_every_baseline_recipe_plans():
    assert {p.stem for p in BASELINES_DIR.glob("*.yaml")} == EXPECTED
    methods, runs, _ = plan(CompareConfig(methods=["baselines/"], sparsities=[0.5]))
    assert {m.name for m in methods} == EXPECTED
    by = {m.name: m for m in methods}
    assert by["sparsegpt-extreme"].sparsities == (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95)
    assert sum(m.name == "sparsegpt-extreme" for m, _, _ in runs) == 7
    assert by["iterative"].defaults["prune_fraction"] == 0.1  # seed 000
    assert by["tiers"].defaults["topk"] == 10 and by["tiers"].defaults["block_size"] == 16  # 004


@pytest.mark.parametrize("name,fn", [
    ("sparsegpt", "gpsearch.methods.sparsegpt:prune_sparsegpt"),
    ("wanda-variant", "gpsearch.methods.wanda:prune_wanda"),
    ("slimgpt", "gpsearch.methods.structured.slimgpt:slimgpt"),
    ("width-taylor", "gpsearch.methods.structured.width:width_prune")])
def test_recipe_values_equal_the_code_defaults(name, fn):
    import importlib

    mod, attr = fn.split(":")
    params = inspect.signature(getattr(importlib.import_module(mod), attr)).parameters
    knobs = load_recipe(BASELINES_DIR / f"{name}.yaml").knobs
    for k, v in knobs.items():
        if k in params:
            d = params[k].default
            assert (tuple(d) if isinstance(d, (list, tuple)) else d) == v, (name, k)


def _write(tmp_path, data, name="r.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(p)


@pytest.mark.parametrize("data,needle", [
    ({"method": "sparsegpt", "knob": {"blocksize": 1}}, "unknown key(s) knob"),
    ({"method": "sparsegpt", "knobs": {"blocksise": 64}}, "unknown knob(s) blocksise"),
    ({"knobs": {}}, "'method'"),
    ({"method": "sparsegpt", "sparsities": [1.5]}, "sparsities"),
    ({"method": "sparsegpt", "knobs": {"blocksize": {"a": 1}}}, "knob values"),
    ("method: [unclosed", "not valid YAML"),
    ({"method": "no_such_method((("}, "unknown method"),
])
def test_bad_recipes_are_one_line_errors(tmp_path, data, needle):
    with pytest.raises(UserError) as e:
        plan(CompareConfig(methods=[_write(tmp_path, data)]))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_recipe_exit_2_nothing_written(tmp_path, capsys):
    bad = _write(tmp_path, {"method": "wanda", "extra": 1})
    out = tmp_path / "out"
    assert main(["compare", "--methods", f"{bad},wanda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key(s) extra" in err and not out.exists()


@pytest.fixture
def capture():
    seen = []

    def fn(evaluator, sparsity, pattern, **options):
        seen.append((sparsity, dict(options)))
        return {}

    register("capture", fn, "records its options")
    yield seen
    del registry.METHODS["capture"]


def test_recipe_knobs_reach_the_method_and_options_override(capture, corpus, tokenizer, tmp_path):
    r = _write(tmp_path, {"method": "capture", "knobs": {"a": 1, "b": "x"},
                          "sparsities": [0.3]}, "cap.yaml")
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16)
    ev = EvalConfig(data=corpus, split="test", seqlen=16, max_windows=2)
    evaluator = Evaluator(calib=calib, cache_dir=tmp_path / "c", lm=loaded(make_llama(), tokenizer))
    cfg = CompareConfig(methods=[r, "magnitude"], sparsities=[0.5], calib=calib, evaluation=ev,
                        out=str(tmp_path / "o"), options={"cap": {"b": "y"}})
    res = run_compare(cfg, evaluator=evaluator, progress=False, log=lambda s: None)
    assert capture == [(0.3, {"a": 1, "b": "y"})]  # only at the recipe's sparsity
    rows = {(x["method"], x["sparsity"]) for x in res["rows"]}
    assert rows == {("dense", 0.0), ("cap", 0.3), ("magnitude", 0.5)}
    cap = next(x for x in res["rows"] if x["method"] == "cap")
    assert cap["recipe"] == r and "## Recipes" in Path(res["files"]["md"]).read_text()
