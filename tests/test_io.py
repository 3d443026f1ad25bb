"""read_json: data only, size-bounded, one-line errors naming the file; write_json: atomic."""

import json

import pytest

from gpsearch.errors import UserError
from gpsearch.io import read_json, write_json


def test_reads_json_and_refuses_bad_files(tmp_path):
    good = tmp_path / "a.json"
    good.write_text('{"x": [1, 2]}')
    assert read_json(good, "a", 100) == {"x": [1, 2]}
    with pytest.raises(UserError, match="^a: larger than 5 bytes$"):
        read_json(good, "a", 5)
    with pytest.raises(UserError, match="^b: not found$"):
        read_json(tmp_path / "missing.json", "b", 100)
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": ')
    with pytest.raises(UserError, match="^c: not valid JSON") as e:
        read_json(bad, "c", 100)
    assert "\n" not in str(e.value)


def test_write_json_is_indented_with_a_newline_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"p": tmp_path, "x": [1]})
    assert path.read_text() == json.dumps({"p": str(tmp_path), "x": [1]}, indent=2) + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
