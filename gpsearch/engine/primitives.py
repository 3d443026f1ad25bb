"""A DEAP PrimitiveSet built from a search space, and expression strings <-> individuals.

The primitives carry a placeholder function: trees are never compiled by DEAP (``gp.compile``
uses eval), only manipulated as lists, printed (``str(ind)`` is the prefix form that
``gpsearch.tree.parse_prefix`` reads: ``mul(abs(W), sqrt(X))``) and parsed back here by our own
reader (DEAP's ``PrimitiveTree.from_string`` evals unknown tokens: never used on stored text).
"""

from __future__ import annotations

import re

from deap import gp

from gpsearch.engine.space import SearchSpace
from gpsearch.errors import UserError

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)|([(),]))")
MAX_EXPR_CHARS = 1 << 16


def _never_called(*_args):
    raise RuntimeError("gpsearch trees are interpreted by gpsearch.tree, never compiled by DEAP")


class Individual(gp.PrimitiveTree):
    """A metric tree in DEAP's list form, with its (lower is better) fitness and provenance."""

    def __init__(self, content):
        super().__init__(content)
        self.fitness: float | None = None
        self.key: str | None = None  # canonical key (set by the searcher)
        self.origin: dict = {}  # {"op": ..., "parents": [...], "before_oos": ...}

    def copy(self) -> "Individual":
        """A new individual with the same nodes (nodes are immutable and shared) and fitness."""
        out = Individual(list(self))
        out.fitness, out.key, out.origin = self.fitness, self.key, dict(self.origin)
        return out


def build_pset(space: SearchSpace) -> gp.PrimitiveSet:
    """The untyped DEAP primitive set of the space: its operators and terminals by name."""
    pset = gp.PrimitiveSet(f"metric_{space.name}", 0)
    for name, arity in space.arities().items():
        pset.addPrimitive(_never_called, arity, name=name)
    for name in space.terminals:
        pset.addTerminal(name, name=name)
    return pset


def parse_expr(text: str, pset: gp.PrimitiveSet) -> Individual:
    """Prefix expression -> Individual; UserError on unknown names, bad arity or syntax."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("empty tree expression")
    if len(text) > MAX_EXPR_CHARS:
        raise UserError(f"tree expression longer than {MAX_EXPR_CHARS} characters")
    nodes, pos, stripped = [], 0, text.strip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None:
            raise UserError(f"unexpected character in tree expression {stripped[:60]!r}")
        if m.group(1):
            node = pset.mapping.get(m.group(1))
            if node is None:
                raise UserError(f"{m.group(1)!r} is not an operator or terminal of this search "
                                f"space (expression {stripped[:60]!r})")
            nodes.append(node)
        pos = m.end()
    open_slots = 1
    for node in nodes:
        if open_slots == 0:
            raise UserError(f"trailing nodes in tree expression {stripped[:60]!r}")
        open_slots += node.arity - 1
    if open_slots != 0:
        raise UserError(f"incomplete tree expression {stripped[:60]!r}")
    ind = Individual(nodes)
    if str(ind).replace(" ", "") != re.sub(r"\s+", "", stripped):
        raise UserError(f"malformed tree expression {stripped[:60]!r} (parentheses or commas)")
    return ind


def to_pruner_zero_json(ind: gp.PrimitiveTree) -> dict:
    """Pruner-Zero JSON ({"data", "left", "right"}) of an individual, without torch."""
    def build(i: int) -> tuple[dict, int]:
        node, out, nxt = ind[i], {"data": ind[i].name}, i + 1
        for side in ("left", "right")[:node.arity]:
            out[side], nxt = build(nxt)
        return out, nxt

    return build(0)[0]


def within_limits(ind: gp.PrimitiveTree, space: SearchSpace) -> bool:
    """True when the tree respects the space's static height and size limits."""
    return len(ind) <= space.max_size and ind.height <= space.max_height
