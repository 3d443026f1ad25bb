"""Zero-shot accuracy through lm-evaluation-harness, on the resident (pruned) model: its
``HFLM`` wraps the model object in memory, nothing is saved or reloaded.

Tasks:
- ``wiki_lastword`` (embedded, offline): LAMBADA-style last-word prediction on the embedded
  Wikipedia corpus's TEST split. One example per article: the context is the article up to its
  final word, the target that word (trailing punctuation removed, letters only, at least 8 words
  of context). Accuracy = the model's greedy continuation equals the whole word (lm-eval's
  ``loglikelihood`` ``is_greedy``, as its lambada task scores ``acc``).
- any task of lm-eval's registry, e.g. the papers' ``boolq, rte, hellaswag, winogrande,
  arc_easy, arc_challenge, openbookqa``: their data sets come from the Hugging Face hub, so
  without it they are a one-line error.

Results: ``{task: {"acc": x, "acc_stderr": se, "n": examples, ...}}`` (``acc_norm`` too where the
task defines it); the standard error is lm-eval's (sample standard deviation / sqrt(n)).
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from pathlib import Path

from gpsearch.errors import UserError

EMBEDDED_TASKS = {"wiki_lastword": "wiki"}  # task name -> text spec whose TEST split it uses
PAPER_TASKS = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge",
               "openbookqa")
MIN_CONTEXT_WORDS = 8
_WORD = re.compile(r"[A-Za-z]{2,}")
_TASK_MANAGER = None


def parse_tasks(text: str | list | None) -> list[str]:
    """'wiki_lastword,boolq' -> ['wiki_lastword', 'boolq'] (empty / none -> [])."""
    items = text if isinstance(text, list) else str(text or "").split(",")
    out = [str(t).strip() for t in items if str(t).strip() and str(t).strip().lower() != "none"]
    for t in out:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", t):
            raise UserError(f"bad zero-shot task name {t!r}")
    return list(dict.fromkeys(out))


def lastword_examples(texts, limit: int | None = None) -> list[dict]:
    """LAMBADA-style examples: context = the text up to its last word, target = ' ' + word."""
    out = []
    for text in texts:
        text = text.rstrip()
        cut = text.rfind(" ")
        if cut < 0:
            continue
        word = text[cut + 1:].rstrip(".,;:!?\"')]")  # a word with a leading quote is skipped
        context = text[:cut]
        if not _WORD.fullmatch(word) or len(context.split()) < MIN_CONTEXT_WORDS:
            continue
        out.append({"context": context, "target": " " + word})
        if limit is not None and len(out) >= limit:
            break
    return out


def lastword_task(name: str, examples: list[dict], workdir: str | Path):
    """An lm-eval task over ``examples`` (a local JSON-lines file in ``workdir``)."""
    from lm_eval.api.task import ConfigurableTask

    path = Path(workdir) / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return ConfigurableTask(config={
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(path)}}, "test_split": "test",
        "output_type": "loglikelihood", "doc_to_text": "{{context}}",
        "doc_to_target": "{{target}}", "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]})


def _hub_tasks(names: list[str]) -> dict:
    global _TASK_MANAGER
    from lm_eval.tasks import TaskManager, get_task_dict

    if _TASK_MANAGER is None:
        _TASK_MANAGER = TaskManager()
    unknown = [n for n in names if n not in _TASK_MANAGER.all_tasks]
    if unknown:
        raise UserError(f"unknown zero-shot task(s) {', '.join(unknown)}: not embedded "
                        f"({', '.join(EMBEDDED_TASKS)}) and not in lm-eval's registry")
    try:
        return get_task_dict(names, _TASK_MANAGER)
    except Exception as e:  # noqa: BLE001 - offline hub, missing data set...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"zero-shot task(s) {', '.join(names)}: their data sets could not be "
                        f"loaded from the Hugging Face hub (unreachable?): {first}") from None


def build_tasks(names: list[str], workdir: str | Path, limit: int | None = None) -> dict:
    """name -> lm-eval Task; every input error (unknown task, hub unreachable) is a UserError."""
    from gpsearch.model.data import load_texts

    tasks = {}
    for name in names:
        if name in EMBEDDED_TASKS:
            examples = lastword_examples(load_texts(EMBEDDED_TASKS[name], "test"), limit)
            tasks[name] = lastword_task(name, examples, workdir)
    hub = [n for n in names if n not in EMBEDDED_TASKS]
    if hub:
        tasks.update(_hub_tasks(hub))
    return tasks


def check_tasks(names: list[str]) -> None:
    """Build every task once (downloads hub data sets) so errors come before any pruning."""
    if names:
        with tempfile.TemporaryDirectory() as tmp:
            build_tasks(names, tmp, limit=1)


def summarize(results: dict, n_samples: dict) -> dict:
    """lm-eval's ``results`` -> {task: {metric: value, metric_stderr: se, "n": n}}."""
    out = {}
    for task, metrics in results.items():
        row = {}
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or not isinstance(value, (int, float)):
                continue
            row[metric] = float(value)
        if row:
            n = n_samples.get(task, {})
            row["n"] = int(n.get("effective", n.get("original", 0))) if isinstance(n, dict) else 0
            out[task] = row
    return out


def evaluate_zero_shot(model, tokenizer, tasks: list[str], limit: int | None = None,
                       batch_size: int = 4, tasks_built: dict | None = None) -> dict:
    """Accuracy of ``model`` (as it is now, in memory) on ``tasks``; ``limit``: at most this many
    examples per task (the first ones, deterministic)."""
    if not tasks:
        return {}
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    from gpsearch.model.blocks import model_device

    for name in ("lm-eval", "lm_eval", "lm_eval.models.huggingface"):
        logging.getLogger(name).setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  device=str(model_device(model)))
        with tempfile.TemporaryDirectory() as tmp:
            built = tasks_built or build_tasks(tasks, tmp, limit)
            res = evaluate(lm, built, limit=limit, bootstrap_iters=1000, log_samples=False,
                           verbosity="ERROR")
    finally:
        model.train(was_training)
    out = summarize(res["results"], res.get("n-samples", {}))
    missing = [t for t in tasks if t not in out]
    if missing:
        raise RuntimeError(f"lm-eval returned no accuracy for {', '.join(missing)}")
    return {t: out[t] for t in tasks}


def fmt_acc(r: dict | None) -> str:
    """'0.412 ± 0.016' (acc and its standard error) or '-'."""
    if not r or "acc" not in r:
        return "-"
    se = r.get("acc_stderr")
    return f"{r['acc']:.4f}" + (f" ± {se:.4f}" if isinstance(se, float) and math.isfinite(se)
                                else "")
