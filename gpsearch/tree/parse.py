"""Tree text formats <-> Node, and the limits every tree must respect.

- prefix: ``mul(abs(W), sqrt(X))`` (also DEAP's ``str(PrimitiveTree)``), read by our own tokenizer
  and an explicit-stack parser: nothing is ever evaluated as code;
- Pruner-Zero JSON: ``{"data": name, "left": node, "right": node}`` (unary: "left" only, leaves:
  "data" only).
Tree files and expressions are untrusted: every reader here checks depth and size as it goes (no
Python recursion over the input), and every failure is a one-line TreeError.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

from gpsearch.errors import TreeError
from gpsearch.io import ROOT, Refused, read_text, write_text
from gpsearch.tree.node import Node
from gpsearch.tree.ops import EXTENDED, PRUNERZERO, Registry, registry_for

MAX_HEIGHT = 17  # DEAP's classic static limit
MAX_SIZE = 200  # nodes
MAX_FILE_BYTES = 1 << 20  # tree files and expression strings
TREES_DIR = ROOT / "trees"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)|([(),]))\s*")
_JSON_KEYS = ("data", "left", "right")
# a JSON string (closing quote optional, so a match never fails and nothing is rescanned:
# linear time) or a bracket
_JSON_SCAN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|([\[\]{}])', re.DOTALL)


def _short(name) -> str:
    text = str(name)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _shown(path) -> str:
    """A path for a one-line message (quoted when it holds a newline or other odd characters)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _check_name(name: str, nchildren: int, registry: Registry) -> None:
    if registry.is_leaf(name):
        if nchildren:
            raise TreeError(f"terminal {_short(name)} takes no arguments")
    elif registry.is_op(name):
        arity = registry.op(name).arity
        if nchildren != arity:
            raise TreeError(f"operator {_short(name)} takes {arity} argument(s), got {nchildren}")
    else:
        raise TreeError(f"unknown name {_short(name)} (not an operator or terminal of the "
                        f"{registry.name} search space)")


def validate(node: Node, registry: Registry = PRUNERZERO) -> Node:
    """The node itself if it is a valid tree of ``registry`` (known names, right arities, height
    <= MAX_HEIGHT, size <= MAX_SIZE); TreeError otherwise. Stops early on huge or deep input."""
    if not isinstance(node, Node):
        raise TreeError(f"a tree must be a Node, not {type(node).__name__}")
    count, stack = 0, [(node, 0)]
    while stack:
        n, depth = stack.pop()
        count += 1
        if count > MAX_SIZE:
            raise TreeError(f"tree has more than {MAX_SIZE} nodes")
        if depth > MAX_HEIGHT:
            raise TreeError(f"tree deeper than {MAX_HEIGHT}")
        _check_name(n.name, len(n.children), registry)
        stack.extend((c, depth + 1) for c in n.children)
    return node


# ---- prefix ---------------------------------------------------------------------------------
def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            rest = text[pos:].lstrip()
            raise TreeError(f"unexpected character {rest[:1]!r} at position "
                            f"{len(text) - len(rest)} of the expression")
        out.append(m.group(1) or m.group(2))
        pos = m.end()
    return out


def parse_prefix(text: str, registry: Registry = PRUNERZERO) -> Node:
    """``name(arg, arg)`` text -> validated Node, with an explicit stack (depth checked as it
    goes)."""
    if not isinstance(text, str):
        raise TreeError(f"a tree expression must be text, not {type(text).__name__}")
    if len(text) > MAX_FILE_BYTES:
        raise TreeError(f"tree expression longer than {MAX_FILE_BYTES} characters")
    toks = _tokens(text.strip())
    if not toks:
        raise TreeError("empty tree expression")
    open_calls: list[tuple[str, list]] = []  # operators whose ')' is still to come
    done, count, i = None, 0, 0
    while i < len(toks):
        tok = toks[i]
        if done is not None:
            raise TreeError(f"unexpected {_short(tok)} after the end of the expression")
        if not _NAME.fullmatch(tok):
            raise TreeError(f"unexpected {tok!r} where a name was expected")
        count += 1
        if count > MAX_SIZE:
            raise TreeError(f"tree has more than {MAX_SIZE} nodes")
        i += 1
        if i < len(toks) and toks[i] == "(":
            if len(open_calls) >= MAX_HEIGHT:
                raise TreeError(f"tree deeper than {MAX_HEIGHT}")
            if not registry.is_op(tok):
                _check_name(tok, 1, registry)  # raises: unknown name or a terminal with arguments
            open_calls.append((tok, []))
            i += 1
            continue
        _check_name(tok, 0, registry)
        node = Node(tok)
        while True:  # attach the finished node; close every call that a ')' ends here
            if not open_calls:
                done = node
                break
            open_calls[-1][1].append(node)
            nxt = toks[i] if i < len(toks) else None
            if nxt == ",":
                i += 1
                break
            if nxt != ")":
                raise TreeError("missing ',' or ')' in the expression" if nxt else
                                "unbalanced parentheses: the expression ends early")
            name, kids = open_calls.pop()
            _check_name(name, len(kids), registry)
            node = Node(name, tuple(kids))
            i += 1
    if done is None:
        raise TreeError("unbalanced parentheses: the expression ends early")
    return validate(done, registry)


# ---- Pruner-Zero JSON -----------------------------------------------------------------------
def _json_children(d, depth: int) -> list:
    if not isinstance(d, dict):
        kind = "null" if d is None else type(d).__name__
        raise TreeError(f"a tree node must be a JSON object with 'data', got {kind}")
    extra = [k for k in d if k not in _JSON_KEYS]
    if extra:
        raise TreeError(f"unknown key {_short(extra[0])} in a tree node "
                        "(allowed: data, left, right)")
    if "data" not in d:
        raise TreeError("a tree node has no 'data'")
    if not isinstance(d["data"], str):
        raise TreeError(f"'data' of a tree node must be a string, got {type(d['data']).__name__}")
    if "right" in d and "left" not in d:
        raise TreeError(f"node {_short(d['data'])} has 'right' without 'left'")
    if depth > MAX_HEIGHT:
        raise TreeError(f"tree deeper than {MAX_HEIGHT}")
    return [d[k] for k in ("left", "right") if k in d]


def from_json(obj, registry: Registry = PRUNERZERO) -> Node:
    """Pruner-Zero JSON (already decoded) -> validated Node, iteratively, depth and size checked
    before going deeper (a hostile or cyclic structure cannot exhaust the Python stack)."""
    order, stack = [], [(obj, 0)]
    while stack:  # pre-order shape checks
        d, depth = stack.pop()
        kids = _json_children(d, depth)
        _check_name(d["data"], len(kids), registry)
        order.append((d, len(kids)))
        if len(order) > MAX_SIZE:
            raise TreeError(f"tree has more than {MAX_SIZE} nodes")
        stack.extend((k, depth + 1) for k in reversed(kids))
    built: list[Node] = []  # reversed pre-order: each node's children are on top, last child first
    for d, nkids in reversed(order):
        kids = tuple(built.pop() for _ in range(nkids))
        built.append(Node(d["data"], kids))
    return validate(built[0], registry)


def to_json(node: Node) -> dict:
    """Node -> Pruner-Zero JSON object (only "data", "left", "right" keys)."""
    root: dict = {}
    stack = [(node, root)]
    while stack:
        n, out = stack.pop()
        out["data"] = n.name
        for key, child in zip(("left", "right"), n.children):
            out[key] = {}
            stack.append((child, out[key]))
    return root


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting of JSON text, strings skipped (linear, no recursion)."""
    brackets = _JSON_SCAN.findall(text)
    steps = (1 if b in "[{" else -1 for b in brackets if b)
    return max(itertools.accumulate(steps, initial=0))


def _duplicate_keys_refused(pairs):
    if len({k for k, _ in pairs}) != len(pairs):
        raise TreeError("duplicate key in a tree node")
    return dict(pairs)


def read_json_file(path: Path):
    """Decoded JSON of a tree file, refusing big files, non-UTF-8 text and deep nesting first."""
    where = _shown(path)
    try:
        text = read_text(path, MAX_FILE_BYTES, encoding="utf-8-sig")
    except Refused as e:
        if e.reason == "unreadable":
            why = f"cannot read tree file {where}: {e.error.strerror or type(e.error).__name__}"
        else:
            why = {"missing": f"tree file not found: {where}",
                   "not_file": f"{where} is not a regular file",
                   "too_big": f"tree file {where} is larger than {MAX_FILE_BYTES} bytes",
                   "not_text": f"tree file {where} is not UTF-8 text"}[e.reason]
        raise TreeError(why) from None
    if _nesting_depth(text) > MAX_HEIGHT + 1:
        raise TreeError(f"tree in {where} is deeper than {MAX_HEIGHT}")
    try:
        return json.loads(text, object_pairs_hook=_duplicate_keys_refused)
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise TreeError(f"tree file {where} is nested too deeply") from None
    except ValueError as e:
        msg = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else str(e)[:80]
        raise TreeError(f"tree file {where} is not valid JSON ({msg})") from None


# ---- files and specs ------------------------------------------------------------------------
def load_tree(spec: str, registry: Registry | None = None) -> Node:
    """A tree from a .json path, a name of a file in trees/ (``wanda``), or a prefix expression.
    registry None: PRUNERZERO when every name fits it, else EXTENDED."""
    try:
        return _load(spec, registry)
    except TreeError as e:
        raise TreeError(f"bad tree {_short(spec)}: {e}") from None


def _load(spec, registry: Registry | None) -> Node:
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TreeError("empty tree spec" if isinstance(spec, str) else
                        f"a tree spec must be text, not {type(spec).__name__}")
    spec = spec.strip()
    named = TREES_DIR / f"{spec}.json"
    if spec.endswith(".json") or ("(" not in spec and ("/" in spec or os.sep in spec)):
        node = from_json(read_json_file(Path(spec)), registry or EXTENDED)
    elif _NAME.fullmatch(spec) and "." not in spec and named.is_file():
        node = from_json(read_json_file(named), registry or EXTENDED)
    elif _NAME.fullmatch(spec) and not (registry or EXTENDED).is_leaf(spec):
        known = sorted(p.stem for p in TREES_DIR.glob("*.json"))
        raise TreeError(f"no tree named {_short(spec)} in {TREES_DIR} (known: {', '.join(known)}) "
                        "and not a terminal")
    else:
        node = parse_prefix(spec, registry or EXTENDED)
    return node if registry else validate(node, registry_for(node))


def save_tree(node: Node, path) -> None:
    """Write the tree as pretty Pruner-Zero JSON (refusing a tree no registry could load)."""
    validate(node, registry_for(node) if isinstance(node, Node) else PRUNERZERO)
    path = Path(path)
    try:
        write_text(path, json.dumps(to_json(node), indent=2) + "\n")
    except OSError as e:
        raise TreeError(f"cannot write tree file {_shown(path)}: "
                        f"{e.strerror or type(e).__name__}") from None
