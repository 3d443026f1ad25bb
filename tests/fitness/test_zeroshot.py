"""Zero-shot accuracy through lm-eval on the resident model, against an independent count."""

import math
import random

import pytest
import torch

from gpsearch.errors import UserError
from gpsearch.fitness.zeroshot import (
    evaluate_zero_shot,
    fmt_acc,
    lastword_examples,
    lastword_task,
    parse_tasks,
)
from tests.conftest import WORDS, make_llama, make_tokenizer


def test_lastword_examples_strip_punctuation_and_need_context():
    texts = ["one two three four five six seven eight nine Paris.",
             "too short for a context here.",
             "one two three four five six seven eight nine 1999.",
             "a b c d e f g h i j k \"Lyon\")",
             "a b c d e f g h i j k Lyon\")"]
    ex = lastword_examples(texts)
    assert ex == [{"context": "one two three four five six seven eight nine", "target": " Paris"},
                  {"context": "a b c d e f g h i j k", "target": " Lyon"}]
    assert lastword_examples(texts, limit=1) == ex[:1]


def test_parse_tasks():
    assert parse_tasks("wiki_lastword, boolq,wiki_lastword") == ["wiki_lastword", "boolq"]
    assert parse_tasks(None) == [] and parse_tasks("none") == []
    with pytest.raises(UserError):
        parse_tasks("boolq;rm -rf")


def test_accuracy_matches_an_independent_greedy_count(tmp_path):
    model, tok = make_llama(), make_tokenizer()
    rng = random.Random(0)
    examples, expected = [], []
    for i in range(24):
        ctx = " ".join(rng.choices(WORDS, k=rng.randint(5, 12)))
        ids = torch.tensor([tok(ctx)["input_ids"]])
        with torch.no_grad():
            greedy = int(model(ids).logits[0, -1].argmax())
        word = tok.convert_ids_to_tokens(greedy)
        if i % 3 == 0 or word not in WORDS:  # a wrong word for a third of them
            word = next(w for w in WORDS if tok.convert_tokens_to_ids(w) != greedy)
        examples.append({"context": ctx, "target": " " + word})
        expected.append(float(tok.convert_tokens_to_ids(word) == greedy))
    acc = sum(expected) / len(expected)
    assert 0.3 < acc < 0.9  # the test can tell right from wrong
    se = math.sqrt(sum((x - acc) ** 2 for x in expected) / (len(expected) - 1) / len(expected))
    task = {"tiny_lastword": lastword_task("tiny_lastword", examples, tmp_path)}
    out = evaluate_zero_shot(model, tok, ["tiny_lastword"], tasks_built=task)
    r = out["tiny_lastword"]
    assert r["n"] == 24
    assert r["acc"] == pytest.approx(acc)
    assert r["acc_stderr"] == pytest.approx(se)
    assert fmt_acc(r).startswith(f"{acc:.4f} ± ")
    assert not model.training


class _FakeManager:  # lm-eval's TaskManager indexes ~15k task files (tens of seconds)
    all_tasks = ["boolq", "rte"]


def test_unknown_and_unreachable_hub_tasks_are_one_line_errors(monkeypatch):
    import lm_eval.tasks

    from gpsearch.fitness import zeroshot

    monkeypatch.setattr(zeroshot, "_TASK_MANAGER", _FakeManager())
    with pytest.raises(UserError, match="unknown zero-shot task"):
        zeroshot.check_tasks(["no_such_task_xyz"])

    def offline(names, manager):
        raise ConnectionError("Couldn't reach 'aps/super_glue' on the Hub\nsecond line")

    monkeypatch.setattr(lm_eval.tasks, "get_task_dict", offline)
    with pytest.raises(UserError) as e:
        zeroshot.check_tasks(["boolq"])
    assert "Hugging Face hub" in str(e.value) and "\n" not in str(e.value)
