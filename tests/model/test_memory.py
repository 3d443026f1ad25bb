"""Memory accounting: bytes per kind and place on tiny models, the profiler-based peak
transient on a known allocation pattern, and the LLaMA shapes against their published sizes."""

import pytest
import torch

from gpsearch.config import CalibConfig
from gpsearch.model.memory import SHAPES, accounting, before_layout, needs, peak_transient, shape_of
from gpsearch.pruning.evaluator import Evaluator
from tests.conftest import loaded, make_llama


@pytest.mark.parametrize("dtype,wbytes,gbytes", [(torch.float32, 4, 4), (torch.bfloat16, 2, 2)])
def test_accounting_by_kind_and_place(dtype, wbytes, gbytes, tokenizer, corpus, tmp_path,
                                      one_thread):
    model = make_llama().to(dtype)
    e = Evaluator(calib=CalibConfig(data=corpus, nsamples=2, seqlen=16, batch_size=2),
                  cache_dir=tmp_path, lm=loaded(model, tokenizer))
    e.features.get("X"), e.features.get("G")
    acc = accounting(e, n_tokens=64)
    params = sum(lin.weight.numel() for lin in e.linears.values())
    x_bytes = sum(4 * lin.in_features for lin in e.linears.values())
    k = acc["kinds"]
    assert acc["pruned_params"] == params
    assert (k["model_weights"]["bytes"] == wbytes * params
            and k["restore_copy"]["bytes"] == wbytes * params)
    assert k["G"]["bytes"] == gbytes * params and k["X"]["bytes"] == x_bytes
    assert k["abs_w"]["bytes"] == 0 and k["restore_copy"]["place"] == "host"
    assert k["kl_reference"]["bytes"] == 64 * 512 * 8 and not k["kl_reference"]["held"]
    assert k["X"]["place"] == "host" and all(t.device.type == "cpu"
                                             for t in e.features.get("X").values())
    assert acc["per_place"]["accelerator"]["bytes"] == (wbytes + gbytes) * params
    assert acc["per_place"]["host"]["bytes"] == wbytes * params + x_bytes
    # the layout before: restore copy beside the model, float32 |W| cache, float32 G
    assert before_layout(acc, wbytes)["accelerator_bytes"] == (2 * wbytes + 8) * params + x_bytes


def test_peak_transient_of_a_known_allocation_pattern():
    a = torch.randn(500, 1000)  # 2 MB of float32, allocated outside: not counted

    def work():
        b = a.abs()      # +2 MB
        c = b * 2        # +2 MB (b and c alive: 4 MB)
        del b
        d = c.sqrt()     # +2 MB (c and d alive: 4 MB)
        del c, d

    peak, _ = peak_transient(work)
    assert 4_000_000 <= peak < 4_100_000


def test_shapes_match_the_published_parameter_counts():
    # Llama-2-7b-hf / 13b-hf / 70b-hf parameter counts (embeddings, untied head, norms included)
    published = {"llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320,
                 "llama-2-70b": 68_976_648_192}
    for name, count in published.items():
        s = SHAPES[name]
        assert s.pruned_params() + s.other_params() == count
    tiny = make_llama()
    assert shape_of(tiny.config).pruned_params() == sum(
        m.weight.numel() for n, m in tiny.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in n)


def test_needs_counts_weights_g_and_the_host_copy():
    s = SHAPES["llama-2-7b"]
    n = needs(s, wbytes=2, g_bytes=2, per_param_transient=0.0)
    assert n["weights"] == 2 * 6_738_415_616 and n["host_restore_copy"] == 2 * s.pruned_params()
    assert n["prune"] - n["weights"] - n["forward"] == 2 * s.pruned_params()  # G; X is on the host
    assert n["host_x"] == 32 * 4 * (6 * 4096 + 11008)
    assert n["search"] - n["prune"] == 2048 * 512 * 8
    assert n["sparsegpt_offload"] < n["sparsegpt_resident"]
