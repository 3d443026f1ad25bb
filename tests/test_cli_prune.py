import json

import pytest
import torch

from gpsearch.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["--tree", "wanda", "--sparsity", "1.0"], "sparsity"),
    (["--tree", "wanda", "--sparsity", "-0.2"], "sparsity"),
    (["--tree", "wanda", "--sparsity", "0.6", "--pattern", "2:4"], "2:4"),
    (["--tree", "wanda", "--pattern", "3x3"], "pattern"),
    (["--tree", "no_such_tree_file_or_expr((("], "tree"),
    (["--tree", "mul(W, frobnicate(X))"], "frobnicate"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needle, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["prune", *argv, "--json", str(out), "--save", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err.lower()
    assert not out.exists() and not (tmp_path / "m").exists()


def test_unknown_model_is_one_line(tmp_path, capsys):
    code = main(["prune", "--tree", "wanda", "--model", str(tmp_path / "missing.gguf")])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
