"""The serial backend: one resident Evaluator in this process scores candidates one by one."""

from __future__ import annotations

import time

from ..config import EvalConfig
from ..errors import TreeError
from ..masks import Pattern
from ..tree import parse_prefix
from .result import EvalResult, fitness_of


class SerialBackend:
    """``evaluate_many(exprs)``: prune with each expression, validation perplexity, restore."""

    def __init__(self, evaluator, sparsity: float, pattern: Pattern, ev: EvalConfig,
                 mode: str = "dense"):
        self.evaluator, self.sparsity, self.pattern, self.ev, self.mode = \
            evaluator, sparsity, pattern, ev, mode

    def evaluate_one(self, expr: str) -> EvalResult:
        t0 = time.perf_counter()
        try:
            tree = parse_prefix(expr, _registry())
            rec = self.evaluator.evaluate(tree, self.sparsity, self.pattern, self.ev, self.mode)
        except TreeError as e:
            return EvalResult.failure(expr, str(e), time.perf_counter() - t0)
        except (RuntimeError, ValueError, FloatingPointError) as e:  # numerical breakdowns
            self.evaluator.restore()
            return EvalResult.failure(expr, f"{type(e).__name__}: {e}"[:300], time.perf_counter() - t0)
        return EvalResult(expr=expr, fitness=fitness_of(rec["ppl"]), ppl=rec["ppl"],
                          seconds=time.perf_counter() - t0,
                          achieved_sparsity=rec["achieved_sparsity"], extra={"timings": rec["timings"]})

    def evaluate_many(self, exprs: list[str]) -> list[EvalResult]:
        return [self.evaluate_one(e) for e in exprs]

    def close(self) -> None:
        pass


def _registry():
    from ..tree import EXTENDED

    return EXTENDED
