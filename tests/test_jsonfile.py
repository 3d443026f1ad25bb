"""read_json: data only, size-bounded, one-line errors naming the file."""

import pytest

from gpsearch.errors import UserError
from gpsearch.jsonfile import read_json


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
