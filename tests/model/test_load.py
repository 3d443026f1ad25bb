import pytest

from gpsearch.errors import UserError
from gpsearch.model.blocks import decoder_blocks, prunable_linears
from gpsearch.model.load import load_model
from tests.conftest import make_llama, make_opt


def test_llama_linears_exclude_head_and_embeddings():
    m = make_llama()
    lins = prunable_linears(m)
    assert len(decoder_blocks(m)) == 2
    assert sorted({k.split(".", 1)[1] for k in lins}) == [
        "mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj",
        "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"]
    assert all(lin.weight is not m.lm_head.weight for lin in lins.values())


def test_opt_linears():
    lins = prunable_linears(make_opt())
    assert sorted({k.split(".", 1)[1] for k in lins}) == [
        "fc1", "fc2", "self_attn.k_proj", "self_attn.out_proj", "self_attn.q_proj",
        "self_attn.v_proj"]
    assert len(lins) == 12


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        load_model(str(tmp_path / "nothing.gguf"))
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path / "notamodel"))
    with pytest.raises(UserError):
        load_model("smollm2-135m", dtype="float8")
