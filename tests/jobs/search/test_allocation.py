"""`--allocation` in the search: the serial backend prunes every candidate at its layer-wise
sparsities (a file's, or OWL from the candidate's own scores), and `gpsearch search` records the
allocation and reports the allocated trees on the test split."""

import json

import pytest

from gpsearch.allocation.apply import AllocationSpec, owl_allocation
from gpsearch.allocation.file import write_allocation
from gpsearch.allocation.levels import Allocation, per_block
from gpsearch.cli import main
from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import EXTENDED, parse_prefix
from gpsearch.workers.serial import SerialBackend
from tests.jobs.search.test_run import tiny  # noqa: F401 - the tiny model + corpus CLI fixture

pytestmark = pytest.mark.usefixtures("one_thread")
PATTERN = parse_pattern("unstructured", 0.5)


def backend(tiny_lm, corpus, tmp_path, allocation=None):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4, batch_size=2)
    evaluator = Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)
    return SerialBackend(evaluator, 0.5, PATTERN, ev, allocation=allocation)


def _blocks_pruned(be, expr):
    """Per-block achieved sparsity when ``expr`` is applied the way evaluate_one applies it."""
    ev = be.evaluator
    tree = parse_prefix(expr, EXTENDED)
    try:
        counts = ev.prune(tree, be.sparsity_for(tree), be.pattern)
    finally:
        ev.restore()
    return per_block(counts), (sum(z for z, _ in counts.values())
                               / sum(t for _, t in counts.values()))


def test_a_file_allocation_is_followed_by_every_candidate(tiny_lm, corpus, tmp_path):
    path = write_allocation(Allocation(0.5, [0.3, 0.7], method="test"), tmp_path / "a.json")
    be = backend(tiny_lm, corpus, tmp_path, AllocationSpec("file", str(path)).to_dict())
    plain = backend(tiny_lm, corpus, tmp_path)
    for expr in ("mul(W, sqrt(X))", "W"):
        blocks, total = _blocks_pruned(be, expr)
        assert blocks == pytest.approx([0.3, 0.7], abs=0.02) and abs(total - 0.5) <= 1e-3
        res = be.evaluate_one(expr)
        assert res.ok and abs(res.achieved_sparsity - 0.5) <= 1e-3
    # other masks than the uniform run's: other fingerprints and another fitness
    assert be.fingerprint_one("W") != plain.fingerprint_one("W")
    assert be.evaluate_one("W").fitness != plain.evaluate_one("W").fitness


def test_owl_allocation_comes_from_each_candidates_own_scores(tiny_lm, corpus, tmp_path):
    spec = AllocationSpec("owl", None, owl_m=1.5, owl_lambda=0.2)
    be = backend(tiny_lm, corpus, tmp_path, spec.to_dict())
    seen = []
    for expr in ("mul(W, sqrt(X))", "W", "X"):
        tree = parse_prefix(expr, EXTENDED)
        want = owl_allocation(be.evaluator, tree, 0.5, 1.5, 0.2)  # independent of the backend
        got = be.sparsity_for(tree)
        assert got.allocation.blocks == pytest.approx(want.blocks)
        assert got.allocation.info["score_tree"] == expr
        blocks, total = _blocks_pruned(be, expr)
        assert blocks == pytest.approx(want.blocks, abs=0.02) and abs(total - 0.5) <= 1e-3
        seen.append(tuple(got.allocation.info["outlier_ratios"]))
    assert len(set(seen)) == 3  # each tree's own outlier ratios (2 blocks: only their order
    # moves the sparsities, which may agree)


def test_search_with_an_allocation_file_records_and_reports_it(tiny, tmp_path):  # noqa: F811
    alloc = write_allocation(Allocation(0.5, [0.35, 0.65], method="test"), tmp_path / "al.json")
    out = tmp_path / "run"
    assert main(["search", *tiny, "--population", "4", "--offspring", "4", "--elite", "2",
                 "--generations", "1", "--seed", "1", "--out", str(out), "--seed-trees", "wanda",
                 "--allocation", str(alloc), "--robustness", "0", "--tune", "0"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["allocation"] == str(alloc)
    assert config["allocation"]["kind"] == "file"
    assert config["allocation"]["file"]["blocks"] == [0.35, 0.65]
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert records and all(r["error"] is None for r in records if r["hit"] is None)
    rows = json.loads((out / "test_report_allocation" / "results.json").read_text())["rows"]
    allocated = [r for r in rows if r["method"].endswith("[al]")]
    assert allocated and all(r["block_sparsity"] == pytest.approx([0.35, 0.65], abs=0.02)
                             for r in allocated)
    summary = (out / "summary.md").read_text()
    assert "[al]" in summary and "layer-wise sparsity" in summary


def test_search_allocation_errors_are_one_line_and_write_nothing(tiny, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    base = ["search", *tiny, "--generations", "0", "--out", str(out)]
    assert main(base + ["--allocation", "owl", "--pattern", "2:4"]) == 2
    assert "needs unstructured" in capsys.readouterr().err
    three = write_allocation(Allocation(0.5, [0.5, 0.5, 0.5]), tmp_path / "three.json")
    assert main(base + ["--allocation", str(three)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1].split("\r")[-1]  # after the model's loading bars
    assert last == "gpsearch search: error: the allocation has 3 blocks, the model 2"
    assert "Traceback" not in err
    assert not out.exists()
