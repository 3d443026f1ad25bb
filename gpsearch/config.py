"""The calibration and evaluation configurations: one object each, recorded in every result;
and the reference tree every report compares with (``WANDA``).

Seed document 002: every method that needs calibration data uses the same data set, number of
samples, sequence length, seed and batch size, and every result records them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gpsearch.errors import UserError

VERSION = "0.1.0"  # gpsearch's version, recorded in every result (pyproject.toml has the same)
SPLITS = ("calibration", "validation", "test")
# Wanda's score |W| * sqrt(X) (trees/wanda.json) as a prefix expression: the reference tree of
# the search's reports and of robustness. Here, not in gpsearch.tree (which re-exports it),
# because the torch-free search engine names it too and gpsearch.tree imports torch.
WANDA = "mul(W, sqrt(X))"


@dataclass(frozen=True)
class CalibConfig:
    """Calibration data shared by every method (features, SparseGPT Hessians, gradients)."""

    data: str = "wiki"
    nsamples: int = 128
    seqlen: int = 256
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self):
        if self.nsamples < 1 or self.seqlen < 2 or self.batch_size < 1:
            raise UserError(
                f"calibration needs nsamples >= 1, seqlen >= 2, batch_size >= 1 "
                f"(got {self.nsamples}, {self.seqlen}, {self.batch_size})"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CalibConfig":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class EvalConfig:
    """Which windows perplexity is measured on. max_windows=None means every window of the split."""

    data: str = "wiki"
    split: str = "test"
    seqlen: int = 256
    max_windows: int | None = None
    batch_size: int = 4

    def __post_init__(self):
        if self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}; choose one of {', '.join(SPLITS)}")
        if self.seqlen < 2 or self.batch_size < 1:
            raise UserError("evaluation needs seqlen >= 2 and batch_size >= 1")
        if self.max_windows is not None and self.max_windows < 1:
            raise UserError("max_windows must be at least 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalConfig":
        return cls(**_known(cls, d))


def _known(cls, d: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise UserError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    return dict(d)


class FlatCalibration:
    """For a config that holds the calibration and evaluation options flat, as its command line
    does (``data``, ``nsamples``, ``seqlen``, ``seed``, ``batch_size``, ``max_windows``): the
    ``CalibConfig`` and the TEST-split ``EvalConfig`` they stand for."""

    def calib(self) -> CalibConfig:
        return CalibConfig(data=self.data, nsamples=self.nsamples, seqlen=self.seqlen,
                           seed=self.seed, batch_size=self.batch_size)

    def evaluation(self) -> EvalConfig:
        return EvalConfig(data=self.data, split="test", seqlen=self.seqlen,
                          max_windows=self.max_windows, batch_size=self.batch_size)
