"""``gpsearch lora``: LoRA recovery fine-tuning of a pruned model (adapters on the decoder blocks'
linears, trained on the calibration split, merged so that every pruned weight stays zero), the
TEST-split perplexity and sparsity before and after, the record and the saved merged model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from gpsearch.config import EvalConfig
from gpsearch.model.load import EMBEDDED


@dataclass
class LoraConfig:
    """One LoRA recovery run; the CLI's defaults are these."""

    model: str = EMBEDDED  # the pruned model, e.g. a directory written by prune --save
    dtype: str = "float32"
    device: str = "cpu"
    data: str = "wiki"  # training text (its calibration split) and evaluation (TEST split)
    seqlen: int = 256  # tokens per training block and per evaluation window
    batch_size: int = 4  # evaluation batch size
    max_windows: int | None = None  # evaluate on at most this many windows
    r: int = 8  # LoRA rank
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 1e-4
    epochs: int = 1
    max_steps: int = 200  # cap on steps per epoch
    train_batch_size: int = 4
    train_seed: int = 42
    save: str | None = None  # save the merged model (HF directory) here
    record: str | None = None  # write the record (with the code's commit) to this file

    def evaluation(self) -> EvalConfig:
        return EvalConfig(data=self.data, split="test", seqlen=self.seqlen,
                          max_windows=self.max_windows, batch_size=self.batch_size)


def run_lora(cfg: LoraConfig, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Load ``cfg.model``, train and merge LoRA adapters (zeros kept), report, write
    ``cfg.record`` and save to ``cfg.save``; returns the record (perplexity before, with the
    adapters and merged; sparsity before and after; the training's steps and losses)."""
    from gpsearch.fitness.perplexity import perplexity
    from gpsearch.jobs.record import write_record
    from gpsearch.methods.lora import LoraSettings, lora_recover
    from gpsearch.model.data import eval_windows
    from gpsearch.model.load import load_model
    from gpsearch.model.save import check_save_dir, save_pruned

    check_save_dir(cfg.save)
    s = LoraSettings(r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, lr=cfg.lr,
                     epochs=cfg.epochs, max_steps=cfg.max_steps,
                     batch_size=cfg.train_batch_size, seqlen=cfg.seqlen, seed=cfg.train_seed,
                     data=cfg.data)
    ev = cfg.evaluation()
    t0 = time.perf_counter()
    lm = load_model(cfg.model, cfg.dtype, cfg.device)
    windows = eval_windows(lm.tokenizer, ev)
    measure = lambda m: perplexity(m, windows, ev.batch_size)["ppl"]  # noqa: E731
    model, rec = lora_recover(lm.model, lm.tokenizer, s, measure=measure, progress=progress)
    lm.model = model
    rec.update(command="lora", model=cfg.model, evaluation=ev.to_dict(),
               wall_s=time.perf_counter() - t0)
    log(f"LoRA r {s.r} alpha {s.alpha} dropout {s.dropout}: {rec['train']['steps']} steps on "
        f"the calibration split of {s.data!r}, {rec['trainable_params']:,} trainable parameters")
    log(f"perplexity ({ev.split}, seqlen {ev.seqlen}): before {rec['ppl_before']:.3f}  "
        f"with adapters {rec['ppl_adapters']:.3f}  merged (zeros kept) {rec['ppl_after']:.3f}")
    log(f"sparsity: before {rec['sparsity_before']:.4f}  after {rec['sparsity_after']:.4f}  "
        f"(a naive merge would leave {rec['naive_merge_sparsity_of_adapted']:.4f})")
    write_record(cfg.record, rec, log)
    if cfg.save:
        log(f"model saved to {save_pruned(lm, cfg.save, rec)}")
    return rec
