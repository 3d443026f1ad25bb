"""Tree text formats -> Node, with every limit checked before anything is built deep.

- prefix: ``mul(abs(W), sqrt(X))`` (also DEAP's ``str(PrimitiveTree)``), our own tokenizer and
  parser: nothing is ever evaluated as code;
- Pruner-Zero JSON: ``{"data": name, "left": node, "right": node}`` (unary: "left" only; leaves:
  "data" only).
Limits: height <= MAX_HEIGHT, size <= MAX_SIZE, files <= MAX_FILE_BYTES.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import TreeError
from .node import Node
from .ops import EXTENDED, PRUNERZERO, Registry

MAX_HEIGHT = 17
MAX_SIZE = 200
MAX_FILE_BYTES = 1 << 20
TREES_DIR = Path(__file__).resolve().parents[2] / "trees"
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)|([(),]))")


def _check_name(name: str, nchildren: int, registry: Registry) -> None:
    if registry.is_leaf(name):
        if nchildren:
            raise TreeError(f"terminal {name!r} takes no arguments")
        return
    if not registry.is_op(name):
        raise TreeError(f"unknown name {name[:40]!r} (not an operator or terminal of the "
                        f"{registry.name} search space)")
    arity = registry.op(name).arity
    if nchildren != arity:
        raise TreeError(f"operator {name!r} takes {arity} argument(s), got {nchildren}")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TreeError(f"unexpected character {text[pos]!r} at position {pos} of the expression")
        out.append(m.group(1) or m.group(2))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_prefix(text: str, registry: Registry = PRUNERZERO) -> Node:
    """Parse ``name(arg, arg)`` syntax without recursion (depth-checked as it goes)."""
    if not isinstance(text, str) or not text.strip():
        raise TreeError("empty tree expression")
    if len(text) > MAX_FILE_BYTES:
        raise TreeError("tree expression too long")
    toks = _tokens(text)
    stack: list[tuple[str, list]] = []  # open operators and their children so far
    result = None
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok in "(),":
            raise TreeError(f"unexpected {tok!r} in the expression")
        if i + 1 < len(toks) and toks[i + 1] == "(":
            if len(stack) >= MAX_HEIGHT:
                raise TreeError(f"tree deeper than {MAX_HEIGHT}")
            stack.append((tok, []))
            i += 2
            continue
        node = Node(tok)
        _check_name(tok, 0, registry)
        i += 1
        # close as many operators as the following ')' say, attaching children
        while True:
            if not stack:
                if result is not None or i != len(toks):
                    raise TreeError("trailing text after the expression")
                result = node
                break
            stack[-1][1].append(node)
            if i < len(toks) and toks[i] == ",":
                i += 1
                break
            if i < len(toks) and toks[i] == ")":
                name, kids = stack.pop()
                _check_name(name, len(kids), registry)
                node = Node(name, tuple(kids))
                i += 1
                continue
            raise TreeError("unbalanced parentheses or missing ',' in the expression")
    if stack or result is None:
        raise TreeError("unbalanced parentheses in the expression")
    return validate(result, registry)


def to_prefix(node: Node) -> str:
    if not node.children:
        return node.name
    return f"{node.name}({', '.join(to_prefix(c) for c in node.children)})"


def validate(node: Node, registry: Registry = PRUNERZERO) -> Node:
    if node.size() > MAX_SIZE:
        raise TreeError(f"tree has more than {MAX_SIZE} nodes")
    if node.height() > MAX_HEIGHT:
        raise TreeError(f"tree deeper than {MAX_HEIGHT}")
    for n in node.walk():
        _check_name(n.name, len(n.children), registry)
    return node


def from_json(obj, registry: Registry = PRUNERZERO) -> Node:
    """Pruner-Zero JSON -> Node, iteratively (hostile depth cannot exhaust the Python stack)."""
    def check(d, depth):
        if not isinstance(d, dict):
            raise TreeError(f"tree node must be an object, got {type(d).__name__}")
        extra = set(d) - {"data", "left", "right"}
        if extra:
            raise TreeError(f"unknown key(s) in tree node: {', '.join(sorted(map(str, extra)))[:80]}")
        if not isinstance(d.get("data"), str):
            raise TreeError("tree node needs a string 'data'")
        if "right" in d and "left" not in d:
            raise TreeError(f"node {d['data'][:40]!r} has 'right' without 'left'")
        if depth > MAX_HEIGHT:
            raise TreeError(f"tree deeper than {MAX_HEIGHT}")
        return [d[k] for k in ("left", "right") if k in d]

    # first pass: shape checks, pre-order, bounded by MAX_SIZE
    order, stack = [], [(obj, 0)]
    while stack:
        d, depth = stack.pop()
        kids = check(d, depth)
        order.append((d, len(kids)))
        if len(order) > MAX_SIZE:
            raise TreeError(f"tree has more than {MAX_SIZE} nodes")
        stack.extend((k, depth + 1) for k in reversed(kids))
    # second pass: build bottom-up
    built: dict[int, Node] = {}
    for d, nk in reversed(order):
        kids = tuple(built[id(d[k])] for k in ("left", "right") if k in d)
        _check_name(d["data"], nk, registry)
        built[id(d)] = Node(d["data"], kids)
    return validate(built[id(obj)], registry)


def to_json(node: Node) -> dict:
    out = {"data": node.name}
    for key, child in zip(("left", "right"), node.children):
        out[key] = to_json(child)
    return out


def _pick_registry(names: set[str]) -> Registry:
    return PRUNERZERO if all(PRUNERZERO.is_leaf(n) or PRUNERZERO.is_op(n) for n in names) else EXTENDED


def _read_json_file(path: Path):
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise TreeError(f"tree file {path} is larger than {MAX_FILE_BYTES} bytes")
        raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
        text = raw.decode("utf-8")
    except OSError as e:
        raise TreeError(f"cannot read tree file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TreeError(f"tree file {path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise TreeError(f"tree file {path} is nested too deeply") from None
    except ValueError as e:
        raise TreeError(f"tree file {path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def load_tree(spec: str, registry: Registry | None = None) -> Node:
    """A tree from a .json path, a name in trees/ (``wanda``), or a prefix expression."""
    try:
        return _load(spec, registry)
    except TreeError as e:
        raise TreeError(f"bad tree {str(spec)[:60]!r}: {e}") from None


def _load(spec: str, registry: Registry | None) -> Node:
    if not isinstance(spec, str) or not spec.strip():
        raise TreeError("empty tree spec")
    spec = spec.strip()
    path = Path(spec)
    if spec.endswith(".json") or (("/" in spec or "\\" in spec) and "(" not in spec):
        if not path.is_file():
            raise TreeError(f"tree file not found: {spec}")
        obj = _read_json_file(path)
        return from_json(obj, registry or EXTENDED) if registry else _json_any(obj)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec) and (TREES_DIR / f"{spec}.json").is_file():
        obj = _read_json_file(TREES_DIR / f"{spec}.json")
        return from_json(obj, registry) if registry else _json_any(obj)
    return parse_prefix(spec, registry or EXTENDED)


def _json_any(obj) -> Node:
    return from_json(obj, EXTENDED)


def save_tree(node: Node, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(node), indent=2) + "\n")
