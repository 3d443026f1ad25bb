import pytest
import torch

from gpsearch.config import CalibConfig
from gpsearch.model.blocks import prunable_linears
from gpsearch.pruning.features import FeatureStore, collect_gradients, collect_input_stats
from gpsearch.pruning.stats import InputStats
from tests.conftest import loaded, make_llama, make_opt
from tests.seqref import damped_inverse_hessian_diag, kill_inputs


def test_x_is_wandas_scaler_row():
    lin_inputs = [torch.randn(3, 5, 8), torch.randn(2, 5, 8)]
    st = InputStats(8, hessian=True)
    for x in lin_inputs:
        st.add(x)
    allx = torch.cat(lin_inputs)  # 5 samples
    expected = (allx.pow(2).sum(dim=1)).mean(dim=0, keepdim=True)  # mean over samples of ||x_j||^2
    assert torch.allclose(st.x, expected, rtol=1e-5)
    flat = allx.reshape(-1, 8)
    assert torch.allclose(st.h, 2.0 / 5 * flat.t() @ flat, rtol=1e-4, atol=1e-5)


def test_dense_x_matches_hooks_on_the_model():
    model = make_llama()
    lins = prunable_linears(model)
    samples = torch.randint(0, 128, (4, 9), generator=torch.Generator().manual_seed(0))
    stats = collect_input_stats(model, lins, samples, batch_size=3)
    seen = []
    h = lins["1.mlp.down_proj"].register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
    with torch.no_grad():
        model(input_ids=samples)
    h.remove()
    expected = seen[0].pow(2).sum(dim=1).mean(dim=0, keepdim=True)
    assert torch.allclose(stats["1.mlp.down_proj"].x, expected, rtol=1e-4)


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_g_is_100_sqrt_sum_of_squared_per_sample_gradients_on_every_linear(make):
    model = make()
    lins = prunable_linears(model)
    samples = torch.randint(0, 128, (3, 7), generator=torch.Generator().manual_seed(1))
    G = collect_gradients(model, lins, samples)
    # independent computation: torch.autograd.grad of each sample's loss w.r.t. every weight
    weights = [lin.weight for lin in lins.values()]
    acc = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    for w in weights:
        w.requires_grad_(True)
    for i in range(3):
        ids = samples[i:i + 1]
        grads = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, weights)
        for a, g in zip(acc, grads):
            a += g.double() ** 2
    assert set(G) == set(lins) and len(lins) == 14 if make is make_llama else len(lins) == 12
    for name, a in zip(lins, acc):
        assert torch.allclose(G[name].double(), 100 * a.sqrt(), rtol=1e-4, atol=1e-6), name
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_h_is_the_damped_inverse_hessian_diagonal_with_dead_inputs(make, tokenizer, corpus,
                                                                   tmp_path):
    model = make()
    dead = kill_inputs(model)
    calib = CalibConfig(data=corpus, nsamples=8, seqlen=32, batch_size=3)
    store = FeatureStore(loaded(model, tokenizer), calib, tmp_path)
    H = store.get("H")
    samples = store.samples()
    got = {n: [] for n in store.linears}  # independent: every linear's raw inputs, one pass
    handles = [lin.register_forward_hook(
        lambda m, a, o, n=n: got[n].append(a[0].reshape(-1, a[0].shape[-1])))
        for n, lin in store.linears.items()]
    with torch.no_grad():
        model(input_ids=samples)
    for h in handles:
        h.remove()
    for name in store.linears:
        ref = damped_inverse_hessian_diag(torch.cat(got[name]), samples.shape[0])
        assert H[name].shape == (1, store.linears[name].in_features)
        assert torch.allclose(H[name], ref, rtol=2e-3, atol=1e-7), name
    for name, j in dead.items():
        assert float(torch.cat(got[name])[:, j].abs().max()) == 0.0  # the input is dead
        diag = 2.0 / 8 * torch.cat(got[name]).double().square().sum(0)
        diag[j] = 1.0
        assert H[name][0, j] == pytest.approx(1.0 / (1.0 + 0.01 * float(diag.mean())), rel=1e-5)


def test_features_are_cached_on_disk(tmp_path, tokenizer, corpus):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    lm = loaded(make_llama(), tokenizer)
    a = FeatureStore(lm, calib, tmp_path)
    xa = a.get("X")
    assert a.computed == ["X"] and a.path("X").is_file()
    b = FeatureStore(lm, calib, tmp_path)
    xb = b.get("X")
    assert b.computed == []
    assert all(torch.equal(xa[k], xb[k]) for k in xa)
    other = FeatureStore(lm, CalibConfig(data=corpus, nsamples=5, seqlen=16), tmp_path)
    assert other.path("X") != a.path("X")


def _g_reference(model, lins, samples, name):
    """Independent G of one linear: autograd.grad per sample, squares summed in float32."""
    w = lins[name].weight
    acc = torch.zeros(w.shape, dtype=torch.float32)
    for i in range(samples.shape[0]):
        ids = samples[i:i + 1]
        w.requires_grad_(True)
        (g,) = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, w)
        w.requires_grad_(False)
        acc += g.float() * g.float()
    return 100 * acc.sqrt()


def test_g_is_kept_in_bfloat16_for_a_bfloat16_model_and_float32_otherwise():
    samples = torch.randint(0, 128, (3, 7), generator=torch.Generator().manual_seed(1))
    model = make_llama().to(torch.bfloat16)
    lins = prunable_linears(model)
    G = collect_gradients(model, lins, samples)
    assert all(g.dtype == torch.bfloat16 for g in G.values())
    ref = _g_reference(model, lins, samples, "1.mlp.up_proj")
    # accumulated in float32, rounded once: within bf16's half ulp (2^-9) of the reference
    assert torch.allclose(G["1.mlp.up_proj"].float(), ref, rtol=2 ** -8, atol=1e-6)
    m32 = make_llama()
    G32 = collect_gradients(m32, prunable_linears(m32), samples)
    assert all(g.dtype == torch.float32 for g in G32.values())


def test_cached_float32_g_is_cast_on_load_for_a_16_bit_model(tmp_path, tokenizer, corpus):
    from gpsearch.model.load import LoadedModel

    calib = CalibConfig(data=corpus, nsamples=2, seqlen=16, batch_size=2)
    g32 = FeatureStore(LoadedModel(make_llama(), tokenizer, "t", "same"), calib, tmp_path).get("G")
    bf = FeatureStore(LoadedModel(make_llama().to(torch.bfloat16), tokenizer, "t", "same"), calib,
                      tmp_path)
    g16 = bf.get("G")
    assert bf.computed == []  # loaded from the float32 file
    assert all(g16[n].dtype == torch.bfloat16 and torch.equal(g16[n], g32[n].to(torch.bfloat16))
               for n in g32)


@pytest.mark.parametrize("make", [make_llama, make_opt])
def test_snapshots_cache_exactly_the_features_of_the_smaller_calibration(make, tmp_path,
                                                                         tokenizer, corpus):
    lm = loaded(make(), tokenizer)
    big = CalibConfig(data=corpus, nsamples=8, seqlen=16, batch_size=2)
    store = FeatureStore(lm, big, tmp_path / "c", snapshots=(4, 5, 8, 12))
    store.get("X")
    store.get("G")
    store.get("H")
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "c" / "features").iterdir())
    # 4: X, G, H; 5: G only (X's batches of 2 end at 4 and 6); 8 is the pass itself, 12 > 8
    assert files == ["G", "G", "G", "H", "H", "X", "X"]
    for n, kinds in ((4, ("X", "G", "H")), (5, ("G",))):
        small = CalibConfig(data=corpus, nsamples=n, seqlen=16, batch_size=2)
        cached = FeatureStore(lm, small, tmp_path / "c")
        fresh = FeatureStore(lm, small, tmp_path / "none", use_cache=False)
        assert torch.equal(fresh.samples(), store.samples()[:n])
        for kind in kinds:
            assert cached.path(kind).is_file()
            got, want = cached.get(kind), fresh.get(kind)
            assert set(got) == set(want)
            for name in want:  # bit for bit: the same arithmetic in the same order
                assert torch.equal(got[name], want[name]), (n, kind, name)
        if "X" not in kinds:
            assert not cached.path("X").is_file()
    # the features of the pass itself are unchanged by taking snapshots
    plain = FeatureStore(lm, big, tmp_path / "plain")
    for kind in ("X", "G", "H"):
        for name, t in plain.get(kind).items():
            assert torch.equal(t, store.get(kind)[name])


def test_no_snapshot_when_the_smaller_draw_is_not_a_prefix(tmp_path, tokenizer, corpus,
                                                           monkeypatch):
    import gpsearch.pruning.features as features

    lm = loaded(make_llama(), tokenizer)
    real = features.calibration_samples
    # another seeded draw for the smaller size: its features are not the pass's first samples
    monkeypatch.setattr(features, "calibration_samples",
                        lambda tok, c: real(tok, c) if c.nsamples == 8 else real(tok, c).flip(0))
    store = FeatureStore(lm, CalibConfig(data=corpus, nsamples=8, seqlen=16, batch_size=2),
                         tmp_path, snapshots=(4,))
    store.get("X")
    assert [p.name.split("-")[0] for p in (tmp_path / "features").iterdir()] == ["X"]


def test_get_all_takes_x_from_the_h_pass_bit_for_bit(tmp_path, tokenizer, corpus, monkeypatch):
    import gpsearch.pruning.features as features

    lm = loaded(make_llama(), tokenizer)
    calib = CalibConfig(data=corpus, nsamples=6, seqlen=16, batch_size=2)
    x_only = FeatureStore(lm, calib, tmp_path / "a").get("X")
    passes = []
    real = features.collect_input_stats
    monkeypatch.setattr(features, "collect_input_stats",
                        lambda *a, **k: passes.append(k.get("hessian")) or real(*a, **k))
    store = FeatureStore(lm, calib, tmp_path / "b")
    store.get_all(["X", "G", "H"])
    assert passes == [True]  # one forward pass for X and H
    assert store.computed == ["H", "X", "G"] and store.path("X").is_file()
    for name, t in x_only.items():
        assert torch.equal(store.get("X")[name], t)
