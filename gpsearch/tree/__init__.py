"""Metric trees: operator registries, prefix and Pruner-Zero JSON formats, a safe interpreter.

Imports torch and sympy only. A tree file or expression is untrusted input: it is parsed and
interpreted by our own code here, never executed; every failure is a one-line ``TreeError``.
"""

from gpsearch.config import WANDA
from gpsearch.tree.interp import check_score, evaluate, sympy_expr
from gpsearch.tree.node import Node, terminals_used, to_prefix
from gpsearch.tree.ops import EXTENDED, PRUNERZERO, Operator, Registry
from gpsearch.tree.parse import (
                    MAX_FILE_BYTES,
                    MAX_HEIGHT,
                    MAX_SIZE,
                    TREES_DIR,
                    from_json,
                    load_tree,
                    parse_prefix,
                    registry_for,
                    save_tree,
                    to_json,
                    validate,
)

__all__ = ["Node", "Operator", "Registry", "PRUNERZERO", "EXTENDED", "parse_prefix", "to_prefix",
           "from_json", "to_json", "load_tree", "save_tree", "validate", "registry_for",
           "evaluate", "check_score", "sympy_expr", "terminals_used", "MAX_HEIGHT", "MAX_SIZE",
           "MAX_FILE_BYTES", "TREES_DIR", "WANDA"]
