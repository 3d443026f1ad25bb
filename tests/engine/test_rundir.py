"""RunDir's session records (sessions.jsonl) and the summary line naming them."""

from gpsearch.engine.rundir import RunDir, sessions_line


def test_sessions_are_appended_read_back_and_bad_lines_skipped(tmp_path):
    run = RunDir(tmp_path)
    assert run.sessions() == []
    run.record_session({"commit": "a" * 40, "dirty": False, "after_generation": None,
                        "generations": 7})
    with open(run.file("sessions.jsonl"), "a") as f:
        f.write('{"cut": \n[1, 2]\n')  # a line cut by a crash, and a line that is not an object
    run.record_session({"commit": "b" * 40, "dirty": True, "after_generation": 7,
                        "generations": 14})
    got = run.sessions()
    assert [s["commit"][0] for s in got] == ["a", "b"] and got[1]["after_generation"] == 7


def test_the_summary_names_each_sessions_generations_and_commit():
    one = {"commit": "a" * 40, "dirty": False, "after_generation": None, "generations": 7}
    assert sessions_line([one]) == []  # a run of one session: config.json says it all
    two = {"commit": "b" * 40, "dirty": True, "after_generation": 7, "generations": 14}
    line = sessions_line([one, two])[0]
    assert "generations 0-7 at aaaaaaa;" in line and "generations 8-14 at bbbbbbb (dirty)" in line
    # a session killed in generation 5 and resumed after generation 4: the first one's range
    # ends where the next one continued, not at the generations it asked for
    killed = {"commit": "c" * 40, "after_generation": 4, "generations": 7}
    line = sessions_line([one, killed])[0]
    assert "generations 0-4 at aaaaaaa;" in line and "generations 5-7 at ccccccc" in line
