"""Shapes of statements and bindings the analysis reads: dotted names, the variable an expression writes
through, what a binding binds (element-wise for tuples), and the blocks of compound statements."""
from __future__ import annotations

from typing import Sequence

import libcst as cst

from audits.walk import module_cache, walk

# Method names never resolved to script-defined methods: they are torch API, and `.step()` is an event.
API_METHODS = {
    "step", "zero_grad", "backward", "forward", "train", "eval", "to", "cuda", "cpu", "parameters",
    "named_parameters", "state_dict", "load_state_dict", "item", "sum", "mean", "view", "reshape", "float",
    "half", "bfloat16", "detach", "clone", "size", "numel", "append", "extend", "update", "get", "items",
    "keys", "values", "add_", "copy_", "zero_", "fill_", "mul_", "sub_", "register_buffer", "apply", "modules",
    "children", "__init__", "__call__", "format", "join", "split", "strip", "encode", "decode", "reset",
}

# Methods that put their arguments into the object they are called on (containers, in-place tensor writes).
MUTATOR_METHODS = frozenset({"append", "extend", "insert", "setdefault", "appendleft",
                             "copy_", "add_", "index_put_", "scatter_", "scatter_add_", "index_add_", "index_copy_"})


def dotted(node: cst.CSTNode | None) -> str:
    if type(node) is cst.Name:
        return node.value
    if type(node) is cst.Attribute:
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else f"?.{node.attr.value}"
    if type(node) is cst.Call:
        inner = dotted(node.func)
        return f"{inner}()" if inner else ""
    if type(node) is cst.Subscript:
        inner = dotted(node.value)
        return f"{inner}[]" if inner else ""
    return ""


def root_name(node: cst.CSTNode) -> str:
    """The variable an expression writes through: `doc_loss[b]` → doc_loss, `self.loss_sum` → loss_sum."""
    while True:
        if type(node) is cst.Subscript:
            node = node.value
        elif type(node) is cst.Attribute:
            if type(node.value) is cst.Name and node.value.value in ("self", "cls"):
                return node.attr.value
            if type(node.value) in (cst.Name, cst.Attribute, cst.Subscript):
                node = node.value
            else:
                return node.attr.value
        elif type(node) is cst.Name:
            return node.value
        elif type(node) is cst.Call:
            node = node.func
        else:
            return ""


_NAMES = module_cache()


def names_in(node: cst.CSTNode) -> frozenset[str]:
    """Names and attribute names an expression mentions (cached: rules ask about the same nodes many times)."""
    got = _NAMES.get(id(node))
    if got is not None:
        return got
    out = set()
    for n in walk(node):
        t = type(n)
        if t is cst.Name:
            out.add(n.value)
        elif t is cst.Attribute:
            out.add(n.attr.value)
    got = _NAMES[id(node)] = frozenset(out)
    return got


def assignment_edges(node: cst.Assign | cst.AnnAssign | cst.AugAssign) -> list[tuple[set[str], set[str]]]:
    """(targets, sources) per element: `a, b = x, y.clone()` gives a←x and b←y (attributes by their name)."""
    if node.value is None:
        return []
    targets = [t.target for t in node.targets] if type(node) is cst.Assign else [node.target]
    out = []
    for target in targets:
        for value, names in pairs(target, node.value):
            out.append(({n.lstrip(".") for n in names}, names_in(value)))
    return out


def backward_closure(seeds: set[str], edges: list[tuple[set[str], set[str]]]) -> set[str]:
    """Every name that flows into `seeds` through `(targets, sources)` assignment edges (bounded fixpoint)."""
    out = set(seeds)
    for _ in range(10):
        grew = False
        for targets, sources in edges:
            if targets & out and not sources <= out:
                out |= sources
                grew = True
        if not grew:
            break
    return out


def binding_targets(node: cst.CSTNode) -> list[cst.CSTNode]:
    if type(node) is cst.Assign:
        return [t.target for t in node.targets]
    if type(node) in (cst.AnnAssign, cst.AugAssign):
        return [node.target]
    if type(node) in (cst.For, cst.CompFor):
        return [node.target]
    if type(node) is cst.WithItem and node.asname:
        return [node.asname.name]
    if type(node) is cst.NamedExpr:
        return [node.target]
    return []


def flat_targets(t: cst.CSTNode) -> list[cst.CSTNode]:
    if type(t) in (cst.Tuple, cst.List):
        return [x for e in t.elements for x in flat_targets(e.value)]
    if type(t) is cst.StarredElement:
        return flat_targets(t.value)
    return [t]


def bound_name(t: cst.CSTNode) -> str | None:
    if type(t) is cst.Name:
        return t.value
    if type(t) is cst.Attribute and type(t.value) is cst.Name and t.value.value in ("self", "cls"):
        return t.attr.value
    return None


def leaf_name(leaf: cst.CSTNode) -> str | None:
    """A bound name; `self.x` binds the attribute `.x`, shared by every method of the class."""
    if type(leaf) is cst.Attribute and type(leaf.value) is cst.Name and leaf.value.value in ("self", "cls"):
        return "." + leaf.attr.value
    return bound_name(leaf) or (root_name(leaf) if type(leaf) is cst.Subscript else None)


_ELEMENTS = module_cache()


def call_element(call: cst.Call, index: int) -> cst.Subscript:
    """`call(...)[index]`, the value `a, b = call(...)` puts in its index-th name; one node per (call, index) for
    the module's lifetime, so caches keyed by node id stay valid."""
    key = (id(call), index)
    got = _ELEMENTS.get(key)
    if got is None:
        got = _ELEMENTS[key] = cst.Subscript(call, [cst.SubscriptElement(cst.Index(cst.Integer(str(index))))])
    return got


def indexed_call(node: cst.CSTNode) -> tuple[cst.Call, int] | None:
    """`f(...)[2]`: the call and the constant index, else None."""
    if type(node) is not cst.Subscript or type(node.value) is not cst.Call or len(node.slice) != 1:
        return None
    sl = node.slice[0].slice
    if type(sl) is not cst.Index or type(sl.value) is not cst.Integer:
        return None
    try:
        return node.value, int(sl.value.value, 0)
    except ValueError:
        return None


def pairs(target: cst.CSTNode, value: cst.CSTNode, unpack_calls: bool = False) -> list[tuple[cst.CSTNode, list[str]]]:
    """`a, b = e1, e2` binds element-wise, so `x, y = chunk[:-1], chunk[1:]` does not make x a target. With
    `unpack_calls` (assignments, not loops), `a, b = f(...)` binds a to `f(...)[0]` and b to `f(...)[1]`, so what
    a script function returns in one slot of its tuple does not reach the names unpacked from the others."""
    if type(target) in (cst.Tuple, cst.List) and type(value) is cst.Call and \
            dotted(value.func) in ("zip", "enumerate") and not any(a.star or a.keyword for a in value.args):
        # `for i, (prev, tgt) in enumerate(zip(x, y))`: element-wise, the index carries nothing
        elems = [e.value for e in target.elements]
        if dotted(value.func) == "enumerate" and len(elems) == 2 and len(value.args) == 1:
            return pairs(elems[1], value.args[0].value)
        if dotted(value.func) == "zip" and len(elems) == len(value.args):
            return [p for te, a in zip(elems, value.args) for p in pairs(te, a.value)]
    if type(target) in (cst.Tuple, cst.List) and type(value) in (cst.Tuple, cst.List) and \
            len(target.elements) == len(value.elements) and \
            not any(type(e) is cst.StarredElement for e in (*target.elements, *value.elements)):
        out = []
        for te, ve in zip(target.elements, value.elements):
            out.extend(pairs(te.value, ve.value, unpack_calls))
        return out
    if unpack_calls and type(target) in (cst.Tuple, cst.List) and type(value) is cst.Call and \
            not any(type(e) is cst.StarredElement for e in target.elements):
        return [p for i, te in enumerate(target.elements) for p in pairs(te.value, call_element(value, i))]
    names = [x for x in (leaf_name(leaf) for leaf in flat_targets(target)) if x]
    return [(value, names)] if names else []


def exits(block: Sequence[cst.CSTNode]) -> bool:
    if not block:
        return False
    last = block[-1]
    if type(last) is cst.SimpleStatementLine:
        return any(type(s) in (cst.Return, cst.Raise, cst.Continue, cst.Break) for s in last.body)
    return False


def block_of(node: cst.CSTNode | None) -> Sequence[cst.CSTNode]:
    if node is None:
        return []
    body = getattr(node, "body", None)
    if type(body) is cst.IndentedBlock:
        return body.body
    if type(body) is cst.SimpleStatementSuite:
        return [body]
    return []


def header_exprs(stmt: cst.CSTNode) -> list[cst.CSTNode]:
    if type(stmt) is cst.SimpleStatementLine:
        return [stmt]
    if type(stmt) is cst.For:
        return [stmt.iter, stmt.target]
    if type(stmt) is cst.While:
        return [stmt.test]
    if type(stmt) is cst.With:
        return list(stmt.items)
    if type(stmt) is cst.Try:
        return [h.type for h in stmt.handlers if h.type is not None]
    if type(stmt) is cst.Match:
        return [stmt.subject]
    return []


def child_blocks(stmt: cst.CSTNode) -> list[Sequence[cst.CSTNode]]:
    if type(stmt) in (cst.For, cst.While):
        return [block_of(stmt), block_of(stmt.orelse)]
    if type(stmt) is cst.With:
        return [block_of(stmt)]
    if type(stmt) is cst.Try:
        return [block_of(stmt)] + [block_of(h) for h in stmt.handlers] + [block_of(stmt.orelse), block_of(stmt.finalbody)]
    if type(stmt) is cst.Match:
        return [block_of(c) for c in stmt.cases]
    return []
