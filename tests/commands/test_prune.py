import json

import pytest

from gpsearch.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["--tree", "wanda", "--sparsity", "1.0"], "sparsity"),
    (["--tree", "wanda", "--sparsity", "-0.2"], "sparsity"),
    (["--tree", "wanda", "--sparsity", "0.6", "--pattern", "2:4"], "2:4"),
    (["--tree", "wanda", "--pattern", "3x3"], "pattern"),
    (["--tree", "no_such_tree_file_or_expr((("], "tree"),
    (["--tree", "mul(W, frobnicate(X))"], "frobnicate"),
    (["--tree", "wanda", "--device-map", "everywhere"], "device-map"),
    (["--tree", "wanda", "--device-map", "auto", "--offload"], "not both"),
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


def test_offload_and_device_map_cpu_runs_match_the_plain_run(tmp_path, capsys, one_thread):
    from tests.conftest import make_llama, make_tokenizer, write_corpus

    make_llama().save_pretrained(tmp_path / "m")
    make_tokenizer().save_pretrained(tmp_path / "m")
    corpus = write_corpus(tmp_path / "c.txt")
    base = ["prune", "--model", str(tmp_path / "m"), "--tree", "mul(W, sqrt(X))", "--features",
            "sequential", "--data", corpus, "--nsamples", "4", "--seqlen", "16", "--batch-size",
            "2", "--max-windows", "2", "--cache-dir", str(tmp_path / "cache")]
    ppl = []
    for i, extra in enumerate(([], ["--offload"], ["--device-map", "cpu"])):
        assert main([*base, *extra, "--json", str(tmp_path / f"{i}.json")]) == 0
        ppl.append(json.loads((tmp_path / f"{i}.json").read_text())["ppl"])
    assert ppl[0] == ppl[1] == ppl[2]
