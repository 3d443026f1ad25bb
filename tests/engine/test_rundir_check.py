"""Run directories are untrusted input: a corpus of broken checkpoints, configs and logs, each
refused by ``gpsearch search --resume`` with one line on stderr and exit 2, the directory left
byte for byte as it was (names, sizes, mtimes and contents hashed before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from gpsearch.cli import main
from gpsearch.engine import rundir_check
from gpsearch.engine.loop import Searcher
from gpsearch.engine.rundir import RunDir
from gpsearch.engine.space import load_space
from gpsearch.jobs.search.plan import DEFAULTS, plan, resolve_settings, run_config
from tests.conftest import write_corpus
from tests.engine.test_loop import FakeBackend, services


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A run directory as ``gpsearch search`` writes it (config from ``run_config``, the run
    directory's hooks, 1 generation after the initial one), with the cheap fake backend of
    test_search_loop standing in for the model: validation never reaches the model."""
    root = tmp_path_factory.mktemp("rundir_check")
    corpus = write_corpus(root / "corpus.txt")
    p = plan(resolve_settings({"data": corpus, "population": 4, "offspring": 4, "elite": 2,
                               "generations": 1, "seed": 1, "report": "none",
                               "seed_trees": ["wanda"], "space": "prunerzero",
                               "stages": "none"}))
    run = RunDir.create(root / "run", run_config(p))
    searcher = Searcher(p.space, FakeBackend(), p.search, services(), p.seeds)
    run.attach(searcher)
    searcher.run_until(1)
    run.write_best_tree(searcher.best()["expr"], searcher.pset)
    run.write_summary("summary\n")
    return run.path


def tree_hash(path) -> str:
    """Names, sizes, mtimes and (below 16 MiB) contents of everything under ``path``."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        h.update(f"D {os.path.relpath(dirpath, path)}\n".encode())
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            h.update(f"F {name} {st.st_size} {st.st_mtime_ns}\n".encode())
            if st.st_size < 16 << 20:
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def edit_json(name):
    def deco(fn):
        def apply(run):
            path = run / name
            data = json.loads(path.read_text())
            fn(data)
            path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity as such
        return apply
    return deco


def checkpoint_edit(fn):
    return edit_json("checkpoint.json")(fn)


def config_edit(fn):
    return edit_json("config.json")(fn)


def truncate(name):
    def apply(run):
        text = (run / name).read_text()
        (run / name).write_text(text[:len(text) // 2])
    return apply


def huge_checkpoint(run):
    with open(run / "checkpoint.json", "r+b") as f:  # sparse: no disk space, no write time
        f.truncate(rundir_check.MAX_CHECKPOINT_BYTES + 1)


def nested_checkpoint(run):
    (run / "checkpoint.json").write_text("[" * 200_000 + "]" * 200_000)


def checkpoint_is_a_dir(run):
    (run / "checkpoint.json").unlink()
    (run / "checkpoint.json").mkdir()


def log_garbage_in_the_middle(run):
    lines = (run / "log.jsonl").read_text().splitlines()
    lines.insert(2, '{"gen": 0, "expr": "W"')  # a cut line that is not the last one
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")


def log_line_not_a_record(run):
    with open(run / "log.jsonl", "a") as f:
        f.write("[1, 2, 3]\n")


def config_not_utf8(run):
    (run / "config.json").write_bytes(b"\xff\xfe{\x00")


def progress_png_is_a_dir(run):
    (run / "progress.png").unlink()
    (run / "progress.png").mkdir()


def _deep(depth):
    return "sqrt(" * depth + "W" + ")" * depth


def _set(path, value):
    def fn(data):
        obj = data
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return fn


def _delete(path):
    def fn(data):
        obj = data
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
    return fn


def _other_space(data):
    data["space"] = load_space("extended").to_dict()


def _config_space_unknown_op(data):
    data["space"]["unary"].append("frobnicate")


CORPUS = {  # case -> (change to a copy of the base run directory, text the error line holds)
    "checkpoint truncated JSON": (truncate("checkpoint.json"), "is not valid JSON"),
    "config truncated JSON": (truncate("config.json"), "is not valid JSON"),
    "config not UTF-8": (config_not_utf8, "is not UTF-8 text"),
    "config is a list": (lambda run: (run / "config.json").write_text("[]"), "must be an object"),
    "checkpoint huge (sparse) file": (huge_checkpoint, "more than the 268435456"),
    "checkpoint nested 200,000 deep": (nested_checkpoint, "nested too deeply"),
    "checkpoint is a directory": (checkpoint_is_a_dir, "is not a regular file"),
    "NaN fitness": (checkpoint_edit(_set(["population", 0, "fitness"], float("nan"))),
                    "population[0].fitness must be a finite number"),
    "infinite cache fitness": (checkpoint_edit(lambda d: next(iter(d["cache"].values()))
                                               .__setitem__("fitness", float("inf"))),
                               ".fitness must be a finite number"),
    "fitness as a string": (checkpoint_edit(_set(["population", 1, "fitness"], "12.5")),
                            "population[1].fitness must be a finite number"),
    "generation as a string": (checkpoint_edit(_set(["generation"], "1")),
                               "generation must be an integer"),
    "missing key (rng)": (checkpoint_edit(_delete(["rng"])), "lacks rng"),
    "unknown top-level field": (checkpoint_edit(_set(["future"], 1)), "unknown field(s) 'future'"),
    "rng word out of range": (checkpoint_edit(_set(["rng", 1, 5], -1)), "rng[1][5] must be"),
    "unknown operator": (checkpoint_edit(_set(["population", 0, "expr"], "frob(W)")),
                         "population[0].expr is not a tree of the search space"),
    "oversized tree": (checkpoint_edit(_set(["population", 0, "expr"], _deep(30))),
                       "population[0].expr exceeds the search space limits"),
    "key not in the cache": (checkpoint_edit(_set(["population", 0, "key"], "nokey")),
                             "population[0].key 'nokey' is not a key of the cache"),
    "negative counter": (checkpoint_edit(_set(["counters", "evaluated"], -3)),
                         "counters.evaluated must be an integer"),
    "logbook row missing": (checkpoint_edit(lambda d: d["logbook"].pop()),
                            "logbook has 1 items, expected 2"),
    "checkpoint of a different space": (checkpoint_edit(_other_space),
                                        "space differs from the run's search space"),
    "config of a different space": (config_edit(_other_space), "space differs"),
    "config space with an unknown operator": (config_edit(_config_space_unknown_op),
                                              "frobnicate/1 is not an operator"),
    "setting of the wrong type": (config_edit(_set(["settings", "population"], "4")),
                                  "settings.population has the wrong type"),
    "setting NaN": (config_edit(_set(["settings", "sparsity"], float("nan"))),
                    "settings.sparsity must be finite"),
    "unknown setting": (config_edit(_set(["settings", "warp"], 9)),
                        "settings.warp is not a search setting"),
    "setting with a NUL": (config_edit(_set(["settings", "data"], "a\0b")), "without NUL"),
    "seed tree outside the space": (config_edit(_set(["seed_exprs"], ["qrt(W)"])),
                                    "seed_exprs[0] is not a tree of the search space"),
    # the staged fields --resume reads (stages, windows, conditions)
    "stages text hostile": (config_edit(_set(["settings", "stages"], "1024:1,99999999999999:x")),
                            "'99999999999999:x' is not TOKENS:FRACTION"),
    "stages text a huge list": (
        config_edit(_set(["settings", "stages"], ",".join(["512:1"] * 5000))),
        "settings.stages must be a string without NUL of at most 4096"),
    "fitness-nsamples not a number": (config_edit(_set(["settings", "fitness_nsamples"], "32;rm")),
                                      "--fitness-nsamples: '32;rm' is not an integer"),
    "fitness-rescale NaN": (config_edit(_set(["settings", "fitness_rescale"], "G=nan")),
                            "'nan' is not a number"),
    "cache record stage score NaN": (
        checkpoint_edit(lambda d: next(iter(d["cache"].values())).__setitem__(
            "stages", [{"windows": 2, "score": float("nan"), "ppl": 1.0}])),
        ".stages[0].score must be a finite number"),
    "cache record stage windows negative": (
        checkpoint_edit(lambda d: next(iter(d["cache"].values())).__setitem__(
            "stages", [{"windows": -4, "score": 1.0, "ppl": 1.0}])),
        ".stages[0].windows must be an integer"),
    "log.jsonl cut line in the middle": (log_garbage_in_the_middle,
                                         "only the last line may be cut"),
    "log.jsonl line not a record": (log_line_not_a_record, "is not a record object"),
    "progress.png is a directory": (progress_png_is_a_dir, "is a directory"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_broken_run_directory_is_one_line_exit_2_and_unchanged(case, base, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base, run)
    change, needle = CORPUS[case]
    change(run)
    before = tree_hash(run)
    assert main(["search", "--resume", str(run)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert err.startswith("gpsearch search: error: ")
    assert tree_hash(run) == before


def test_the_intact_run_directory_passes_every_check(base):
    run = RunDir.open(base)
    config = rundir_check.check_config(run.config(), run.file("config.json"), DEFAULTS)
    p = plan(resolve_settings({}, config["settings"]), config)
    state = rundir_check.check_resume(run, config, p)
    assert state["generation"] == 1 and len(state["population"]) == 4


def test_a_cut_last_log_line_is_accepted(base, tmp_path):
    """A kill during a log write leaves a cut last line: that is a normal resume."""
    run = tmp_path / "run"
    shutil.copytree(base, run)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"gen": 2, "expr": "mul(W,')
    rundir_check.check_log(run / "log.jsonl")


def test_extra_keys_in_verbatim_records_are_tolerated(base):
    """Cache / hall-of-fame / logbook entries may carry fields this version does not know."""
    run = RunDir.open(base)
    config = rundir_check.check_config(run.config(), run.file("config.json"), DEFAULTS)
    p = plan(resolve_settings({}, config["settings"]), config)
    data = run.checkpoint()
    next(iter(data["cache"].values()))["stage_scores"] = [1.0, 2.0]
    data["hof"][0]["note"] = "x"
    data["logbook"][0]["diversity"] = 0.5
    searcher = rundir_check._scratch_searcher(p)
    assert rundir_check.check_checkpoint(data, "checkpoint.json", searcher) is data
