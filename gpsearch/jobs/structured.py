"""``gpsearch structured``: the structured pruning baselines under one calibration (ShortGPT layer
removal, width pruning of attention groups and MLP channels, SlimGPT), the TEST-split perplexity
before and after, optional LoRA recovery, the record and the (physically smaller) saved model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from gpsearch.config import FlatCalibration
from gpsearch.errors import UserError
from gpsearch.model.load import EMBEDDED

METHODS = ("shortgpt", "width", "slimgpt")


@dataclass
class StructuredConfig(FlatCalibration):
    """One structured pruning run; the CLI's defaults are these."""

    method: str = "shortgpt"  # shortgpt, width or slimgpt
    n_remove_layers: int | None = None  # shortgpt: default 25% of the layers; width: default 0
    pruning_ratio: float = 0.2  # width/slimgpt: fraction of attention groups and MLP channels
    importance: str = "taylor"  # width: taylor, wanda or any metric tree spec
    ranking: str = "global"  # width: global or layer
    max_samples: int | None = None  # slimgpt: cap on the tokens feeding each layer's Hessian
    ratio_schedule: str = "uniform"  # slimgpt: uniform or log (growing with depth)
    rounds: int = 8  # slimgpt: greedy batches for MLP channels
    model: str = EMBEDDED
    dtype: str = "float32"
    device: str = "cpu"
    cache_dir: str | None = None
    data: str = "wiki"  # calibration, evaluation (TEST split) and LoRA training text
    nsamples: int = 128
    seqlen: int = 256
    seed: int = 0  # calibration sampling seed
    batch_size: int = 4  # calibration / evaluation batch size
    max_windows: int | None = None  # evaluate on at most this many windows
    lora: bool = False  # then LoRA recovery (r 8, alpha 16, dropout 0.05)
    lora_steps: int = 200  # LoRA steps per epoch
    lora_lr: float = 1e-4
    lora_batch_size: int = 4
    save: str | None = None  # save the pruned model (HF directory) here
    record: str | None = None  # write the record (with the code's commit) to this file



def run_structured(cfg: StructuredConfig, log: Callable[[str], None] = print,
                   progress: bool = True) -> dict:
    """Prune ``cfg.model`` structurally with ``cfg.method``, measure, optionally LoRA-recover,
    write ``cfg.record`` and save to ``cfg.save``; returns the record (parameters before/after,
    dense and pruned perplexity, the method's details, ``lora`` when recovered)."""
    from gpsearch.jobs.record import write_record
    from gpsearch.methods.structured.surgery import save_structured
    from gpsearch.model.blocks import decoder_blocks
    from gpsearch.model.save import check_save_dir
    from gpsearch.pruning.evaluator import Evaluator

    if cfg.method not in METHODS:
        raise UserError(f"unknown structured method {cfg.method!r}; choose {', '.join(METHODS)}")
    check_save_dir(cfg.save)
    calib, ev = cfg.calib(), cfg.evaluation()
    log(f"calibration: {calib.to_dict()}")
    t0 = time.perf_counter()
    evaluator = Evaluator(cfg.model, calib, cfg.dtype, cfg.device, cfg.cache_dir,
                          progress=progress)
    lm = evaluator.lm
    dense = evaluator.perplexity(ev)["ppl"]
    if cfg.method == "shortgpt":
        from gpsearch.methods.structured.shortgpt import shortgpt

        n = cfg.n_remove_layers if cfg.n_remove_layers is not None \
            else len(decoder_blocks(lm.model)) // 4
        rec = shortgpt(lm, calib, n)
    elif cfg.method == "width":
        from gpsearch.methods.structured.width import width_prune

        rec = width_prune(evaluator, cfg.importance, cfg.pruning_ratio, cfg.ranking,
                          cfg.n_remove_layers or 0)
    else:
        from gpsearch.methods.structured.slimgpt import slimgpt

        rec = slimgpt(lm, calib, cfg.pruning_ratio, cfg.max_samples, cfg.ratio_schedule,
                      cfg.rounds)
    rec.update(command="structured", dense_ppl=dense, ppl=evaluator.perplexity(ev)["ppl"],
               evaluation=ev.to_dict(), model=cfg.model)
    log(f"parameters: {rec['params_before']:,} -> {rec['params_after']:,} "
        f"({100 * (1 - rec['params_after'] / rec['params_before']):.2f}% fewer)")
    if rec.get("removed_layers"):
        log(f"removed layers: {rec['removed_layers']}")
    log(f"perplexity ({ev.split}, seqlen {ev.seqlen}): dense {dense:.3f} -> pruned "
        f"{rec['ppl']:.3f}")
    if cfg.lora:
        from gpsearch.fitness.perplexity import perplexity
        from gpsearch.methods.lora import LoraSettings, lora_recover

        s = LoraSettings(lr=cfg.lora_lr, max_steps=cfg.lora_steps,
                         batch_size=cfg.lora_batch_size, seqlen=cfg.seqlen, data=cfg.data)
        windows = evaluator.windows(ev)
        _, rec["lora"] = lora_recover(
            lm.model, lm.tokenizer, s, progress=progress,
            measure=lambda m: perplexity(m, windows, ev.batch_size)["ppl"])
        rec["ppl"] = rec["lora"]["ppl_after"]
        log(f"LoRA: perplexity {rec['lora']['ppl_before']:.3f} -> "
            f"{rec['lora']['ppl_after']:.3f}")
    rec["wall_s"] = time.perf_counter() - t0
    write_record(cfg.record, rec, log)
    if cfg.save:
        log(f"model saved to {save_structured(lm, cfg.save, rec)}")
    return rec
