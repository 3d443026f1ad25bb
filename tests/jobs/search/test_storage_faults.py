"""Storage faults cost time, never results: a checkpoint write that fails (disk full) leaves the
previous checkpoint loadable and --resume continues from it to the undisturbed run's result; a
log.jsonl whose last line was cut (the driver killed mid-write) resumes without loss."""

import errno
import json

from gpsearch.cli import main
from gpsearch.engine import checkpoint
from tests.jobs.search.test_run import tiny  # noqa: F401 - the tiny model + corpus CLI fixture

ARGS = ["--population", "4", "--offspring", "4", "--elite", "2", "--seed", "1",
        "--report", "none", "--tune", "0", "--robustness", "0"]


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_disk_full_at_a_checkpoint_then_resume_equals_the_undisturbed_run(
        tiny, tmp_path, monkeypatch, capsys):  # noqa: F811
    ref = tmp_path / "ref"
    assert main(["search", *tiny, *ARGS, "--generations", "2", "--out", str(ref)]) == 0

    out = tmp_path / "run"
    real_save, calls = checkpoint.save, []

    def failing_save(path, searcher):
        calls.append(searcher.generation)
        if searcher.generation == 1:  # the second checkpoint: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(path, searcher)

    monkeypatch.setattr(checkpoint, "save", failing_save)
    code = main(["search", *tiny, *ARGS, "--generations", "2", "--out", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err
    assert last.startswith("gpsearch search: error: No space left on device")
    saved = json.loads((out / "checkpoint.json").read_text())
    assert saved["generation"] == 0  # the previous checkpoint, intact

    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(["search", "--resume", str(out), "--generations", "2"]) == 0
    a = json.loads((ref / "checkpoint.json").read_text())
    b = json.loads((out / "checkpoint.json").read_text())
    assert a["hof"] == b["hof"] and a["generation"] == b["generation"] == 2
    assert _strip(_records(ref)) == _strip(_records(out))


def test_a_cut_last_log_line_is_dropped_on_resume(tiny, tmp_path, capsys):  # noqa: F811
    ref = tmp_path / "ref"
    assert main(["search", *tiny, *ARGS, "--generations", "2", "--out", str(ref)]) == 0
    out = tmp_path / "run"
    assert main(["search", *tiny, *ARGS, "--generations", "1", "--out", str(out)]) == 0
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"gen": 2, "expr": "mul(W, ')  # the driver died in the middle of a record
    assert main(["search", "--resume", str(out), "--generations", "2"]) == 0
    assert _strip(_records(ref)) == _strip(_records(out))
    capsys.readouterr()
