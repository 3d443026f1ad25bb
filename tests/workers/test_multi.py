"""Multi-condition fitness (workers/multi.py) on two different tiny models (LLaMA and OPT) and on
rescaled terminals: each condition scored against its own dense model, reduced per window."""

import math

import pytest

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.engine.conditions import Condition, fitness_conditions
from gpsearch.errors import UserError
from gpsearch.workers.factory import make_backend
from gpsearch.workers.multi import MultiConditionBackend, combine_fingerprints, reduce_values
from tests.conftest import make_llama, make_opt, make_tokenizer, write_corpus

EXPRS = ["mul(W, sqrt(X))", "add(W, X)", "mul(W, G)"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    tok = make_tokenizer()
    for name, make in (("llama", make_llama), ("opt", make_opt)):
        make().save_pretrained(root / name)
        tok.save_pretrained(root / name)
    corpus = write_corpus(root / "corpus.txt")
    return dict(llama=str(root / "llama"), opt=str(root / "opt"), cache_dir=str(root / "cache"),
                calib=CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2),
                ev=EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4))


def backend(env, conditions=None, model="llama", fitness="kl", reduce="mean", sparsity=0.5):
    return make_backend(0, model=env[model], calib=env["calib"], ev=env["ev"], sparsity=sparsity,
                        cache_dir=env["cache_dir"], fitness=fitness, conditions=conditions,
                        reduce=reduce)


def test_reduce_and_fingerprints_are_plain_math():
    assert reduce_values([[1.0, 4.0], [3.0, 2.0]], "mean") == [2.0, 3.0]
    assert reduce_values([[1.0, 4.0], [3.0, 2.0]], "max") == [3.0, 4.0]
    with pytest.raises(ValueError):
        reduce_values([[1.0], [1.0, 2.0]], "mean")
    assert combine_fingerprints(["a", "invalid: x"]) == "invalid: x"
    assert combine_fingerprints(["a", None]) is None
    assert combine_fingerprints(["a", "b"]) != combine_fingerprints(["b", "a"])


@pytest.mark.parametrize("fitness,reduce", [("kl", "mean"), ("ppl", "max")])
def test_two_models_each_against_its_own_dense_model(env, one_thread, fitness, reduce):
    multi = backend(env, [Condition(), Condition(model=env["opt"])], fitness=fitness, reduce=reduce)
    assert isinstance(multi, MultiConditionBackend) and len(multi.backends) == 2
    assert multi.evaluator is multi.backends[0].evaluator  # the main (LLaMA) model
    singles = [backend(env, fitness=fitness), backend(env, model="opt", fitness=fitness)]
    dense = [s.dense_nll() for s in singles]
    got = multi.evaluate_many(EXPRS, (1, 3))
    for i, expr in enumerate(EXPRS):
        one = [s.evaluate_one(expr, (1, 3)) for s in singles]
        ratios = [[v - d for v, d in zip(r.extra["nll"], dn[1:3])] for r, dn in zip(one, dense)]
        pick = (lambda xs: sum(xs) / len(xs)) if reduce == "mean" else max
        want_nll = [pick(col) for col in zip(*ratios)]
        assert got[i].extra["nll"] == pytest.approx(want_nll, rel=1e-12, abs=1e-12)
        assert got[i].ppl == pytest.approx(math.exp(sum(want_nll) / 2), rel=1e-12)
        if fitness == "kl":
            want = [pick(col) for col in zip(*[r.extra["kl"] for r in one])]
            assert got[i].fitness == pytest.approx(max(sum(want) / 2, 0.0), rel=1e-12, abs=1e-15)
        else:
            assert got[i].fitness == pytest.approx(got[i].ppl, rel=1e-12)
        assert [c["condition"] for c in got[i].extra["conditions"]] == ["baseline",
                                                                        f"model={env['opt']}"]
    assert all(r.ok for r in got)


def test_dense_tree_has_no_degradation_on_either_model(env, one_thread):
    multi = backend(env, [Condition(), Condition(model=env["opt"])], fitness="ppl", sparsity=0.0)
    r = multi.evaluate_one("mul(W, sqrt(X))")
    assert r.ppl == pytest.approx(1.0, abs=1e-9) and r.fitness == pytest.approx(1.0, abs=1e-9)


def test_rescaled_conditions_change_a_mixed_tree_only(env, one_thread):
    plain = backend(env)
    multi = backend(env, [Condition(), Condition(rescale=(("X", 4.0),)),
                          Condition(rescale=(("W", 0.25),))])
    assert len({id(b.evaluator) for b in multi.backends}) == 1  # one resident model
    fps, base = multi.fingerprint_many(EXPRS), plain.fingerprint_many(EXPRS)
    per = [b.fingerprint_many(EXPRS) for b in multi.backends]
    assert per[1][0] == per[0][0] == base[0]  # Wanda's masks: invariant
    assert per[1][1] != per[0][1]  # add(W, X): not
    assert len(set(fps)) == 3
    wanda = multi.evaluate_one(EXPRS[0], (0, 2))
    alone = plain.evaluate_one(EXPRS[0], (0, 2))
    assert wanda.fitness == pytest.approx(alone.fitness, rel=1e-12)


def test_fitness_conditions_from_settings(env):
    conds = fitness_conditions("A,B", "G=4,X=0.25+W=2", "3", "A")
    assert [c.label() for c in conds] == [
        "baseline", "G=4", "W=2+X=0.25", "seed=3",
        "model=B", "G=4+model=B", "W=2+X=0.25+model=B", "seed=3+model=B"]
    assert fitness_conditions("", "", "", "A") == [Condition()]
    assert [c.label() for c in fitness_conditions("", "", "1", "A", "32, 8")] == [
        "baseline", "seed=1", "nsamples=32", "nsamples=8"]
    # the baseline's own calibration size is the baseline: with --nsamples 32 the default
    # --fitness-nsamples 32 adds nothing
    assert fitness_conditions("", "", "", "A", "32", main_nsamples=32) == [Condition()]
    assert [c.label() for c in fitness_conditions("", "", "", "A", "32,8", 32)] == [
        "baseline", "nsamples=8"]
    for bad in ("0", "x", "-3"):
        with pytest.raises(UserError, match="fitness-nsamples"):
            fitness_conditions("", "", "", "A", bad)
    for bad in (("", "Q=2", "", "A"), ("", "nsamples=3", "", "A"), ("", "", "x", "A"),
                ("", "G=-1", "", "A")):
        with pytest.raises(UserError):
            fitness_conditions(*bad)


def test_a_calibration_size_condition_scores_with_those_features(env, one_thread):
    """nsamples=2: the condition's fitness is that of a plain backend calibrated on 2 samples."""
    import dataclasses

    multi = backend(env, [Condition(), Condition(nsamples=2)])
    small = make_backend(0, model=env["llama"], calib=dataclasses.replace(env["calib"], nsamples=2),
                         ev=env["ev"], sparsity=0.5, cache_dir=env["cache_dir"], fitness="kl")
    plain = backend(env)
    for expr in EXPRS:
        got = multi.evaluate_one(expr, (0, 2))
        want = [(a + b) / 2 for a, b in zip(plain.evaluate_one(expr, (0, 2)).extra["kl"],
                                             small.evaluate_one(expr, (0, 2)).extra["kl"])]
        assert got.extra["kl"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    # the 2-sample features really differ: a tree of X gets other masks
    assert small.fingerprint_many(["add(W, X)"]) != plain.fingerprint_many(["add(W, X)"])
