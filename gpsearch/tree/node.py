"""The tree itself: an immutable, hashable node with a name and a tuple of children.

Every walk here is iterative, so even a tree built by hand deeper than Python's recursion limit
can be measured (and then refused by ``validate``) without a RecursionError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from gpsearch.errors import TreeError


@dataclass(frozen=True)
class Node:
    """One node: an operator name with its arguments, or a terminal / constant name (no
    children)."""

    name: str
    children: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TreeError(f"a tree node name must be a string, not {type(self.name).__name__}")
        if not isinstance(self.children, tuple):
            raise TreeError(f"children of {self.name[:40]!r} must be a tuple of nodes")
        for child in self.children:
            if not isinstance(child, Node):
                raise TreeError(f"child of {self.name[:40]!r} is a {type(child).__name__}, "
                                "not a Node")

    def size(self) -> int:
        """Number of nodes."""
        return sum(1 for _ in self.walk())

    def height(self) -> int:
        """Edges on the longest root-to-leaf path (a leaf has height 0)."""
        best, stack = 0, [(self, 0)]
        while stack:
            node, depth = stack.pop()
            best = max(best, depth)
            stack.extend((child, depth + 1) for child in node.children)
        return best

    def walk(self) -> Iterator["Node"]:
        """Every node, pre-order (root first, children left to right)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def __str__(self) -> str:
        return to_prefix(self)


def terminals_used(node: Node) -> set[str]:
    """Names of the leaves of the tree (input terminals and constants)."""
    return {n.name for n in node.walk() if not n.children}


def to_prefix(node: Node) -> str:
    """Canonical text ``name(a, b)``: ``parse_prefix(to_prefix(n)) == n`` (DEAP prints the same)."""
    parts: list[str] = []
    stack: list = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif not item.children:
            parts.append(item.name)
        else:
            parts.append(item.name + "(")
            stack.append(")")
            for k, child in enumerate(reversed(item.children)):
                stack.append(child)
                if k < len(item.children) - 1:
                    stack.append(", ")
    return "".join(parts)
