"""A comparable pruning method (``Method``) and the parsing of comma lists that every part of
``gpsearch compare`` shares (plain data, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from gpsearch.errors import UserError
from gpsearch.pruning.masks import check_sparsity

PruneFn = Callable[..., dict]  # (evaluator, sparsity, pattern, **options) -> extra info


@dataclass(frozen=True)
class Method:
    """A comparable pruning method. ``fn`` prunes ``evaluator.model`` in place (the compare loop
    restores the linears afterwards, then calls ``cleanup`` for anything else a method changed);
    ``prepare`` computes cached inputs outside the timed pruning (e.g. G)."""

    name: str
    fn: PruneFn
    help: str = ""
    kinds: tuple[str, ...] = ("unstructured", "nm")  # pattern kinds it supports
    prepare: Callable | None = None
    cleanup: Callable | None = None
    tree: str | None = None  # prefix expression of a metric tree method
    knobs: frozenset | None = None  # the option names ``fn`` accepts (None: not checked)
    defaults: dict = field(default_factory=dict)  # knob values of a recipe (options override)
    sparsities: tuple = ()  # a recipe's own sparsities (empty: the comparison's)
    recipe: str | None = None  # the baselines/*.yaml file this method came from


def split_list(text: str | list, what: str) -> list[str]:
    """'a,b,mul(W, X)' -> ['a', 'b', 'mul(W, X)']: commas inside parentheses do not split."""
    items = text if isinstance(text, list) else []
    if not isinstance(text, list):
        depth, cur = 0, []
        for ch in str(text):
            if ch == "," and depth == 0:
                items.append("".join(cur))
                cur = []
                continue
            depth += (ch == "(") - (ch == ")")
            cur.append(ch)
        items.append("".join(cur))
    out = [str(t).strip() for t in items if str(t).strip()]
    if not out:
        raise UserError(f"no {what} given")
    return list(dict.fromkeys(out))


def parse_sparsities(text: str | list) -> list[float]:
    out = []
    for item in split_list(text, "sparsity"):
        try:
            out.append(check_sparsity(float(item)))
        except ValueError:
            raise UserError(f"bad sparsity {item!r}: expected a fraction of zeros "
                            "in [0, 1)") from None
    return out
