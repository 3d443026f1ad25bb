"""The tree itself: an immutable node with a name and children."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    name: str
    children: tuple = ()

    def size(self) -> int:
        n, stack = 0, [self]
        while stack:
            node = stack.pop()
            n += 1
            stack.extend(node.children)
        return n

    def height(self) -> int:
        best, stack = 0, [(self, 0)]
        while stack:
            node, d = stack.pop()
            best = max(best, d)
            stack.extend((c, d + 1) for c in node.children)
        return best

    def walk(self):
        """Every node, pre-order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def terminals_used(node: Node) -> set[str]:
    return {n.name for n in node.walk() if not n.children}
