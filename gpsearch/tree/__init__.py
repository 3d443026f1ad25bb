"""Metric trees: operator registry, JSON <-> prefix, a safe interpreter. Imports torch and sympy
only. A tree file is untrusted input: it is parsed and interpreted here, never executed."""

from .interp import check_score, evaluate, sympy_expr
from .node import Node, terminals_used
from .ops import EXTENDED, PRUNERZERO, Operator, Registry
from .parse import (MAX_HEIGHT, MAX_SIZE, from_json, load_tree, parse_prefix, save_tree,
                    to_json, to_prefix, validate)

__all__ = ["Node", "Operator", "Registry", "PRUNERZERO", "EXTENDED", "parse_prefix", "to_prefix",
           "from_json", "to_json", "load_tree", "save_tree", "validate", "evaluate", "check_score",
           "sympy_expr", "terminals_used", "MAX_HEIGHT", "MAX_SIZE"]
