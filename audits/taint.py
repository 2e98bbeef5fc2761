"""Taint: which names carry validation tokens, training data or targets. What a name says by itself, what an
expression carries, and the fixpoint over every function and call context (function summaries: what a call
returns, which parameters reach it, what a method returns of its own)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from audits import patterns as P
from audits.functions import Func, bind_args, bindings, class_bindings
from audits.syntax import dotted, indexed_call
from audits.walk import children, module_cache

if TYPE_CHECKING:
    from audits.program import Program

VAL, TRAIN, TARGET = "val", "train", "target"

_LEAVES = module_cache()
_NO_TAINT: frozenset[str] = frozenset()
_NAME_KINDS: dict[str, frozenset[str]] = {}


def name_kinds(name: str) -> frozenset[str]:
    """What a name says about its data by itself (`val_tokens` → val), whatever it is bound to."""
    kinds = _NAME_KINDS.get(name)
    if kinds is None:
        found = set()
        if P.VAL_NAME.match(name):
            found.add(VAL)
        if P.TRAIN_NAME.match(name):
            found.add(TRAIN)
        if P.TARGET_NAME.match(name):
            found.add(TARGET)
        kinds = _NAME_KINDS[name] = frozenset(found)
    return kinds


def taint_leaves(node: cst.CSTNode) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...],
                                             tuple[tuple[cst.Call, int | None], ...], tuple[str, ...]]:
    """The parts of an expression that can carry taint, split into what its words say on their own (names,
    attribute names, strings, validation-loading calls) and what needs a lookup: the names and attribute names
    (their bindings), the calls (with the constant index taken of their result, `f(...)[1]`, or None), and the
    attributes read through `self`/`cls` (bound per class, not across every class that has an attribute of that name). The arguments of a call are not part of the expression's own leaves: what a
    call passes on is decided per callee (`expr_taint`), so `train_model(h, val_data)` is not validation data
    just because one argument is. Cached per node."""
    got = _LEAVES.get(id(node))
    if got is not None:
        return got
    static: set[str] = set()
    names: dict[str, None] = {}
    attrs: dict[str, None] = {}
    own: dict[str, None] = {}
    calls: list[tuple[cst.Call, int | None]] = []
    todo = [node]
    while todo:
        n = todo.pop()
        t = type(n)
        if t is cst.Subscript:
            element = indexed_call(n)
            if element is not None:
                calls.append(element)
                if P.VAL_CALL.search(P.last_part(dotted(element[0].func))):
                    static.add(VAL)
                todo.append(element[0].func)
                continue
        if t is cst.Name:
            names[n.value] = None
            static |= name_kinds(n.value)
            continue
        if t is cst.Attribute:
            if type(n.value) is cst.Name and n.value.value in ("self", "cls"):
                own[n.attr.value] = None  # `self.stream`: the attribute of this class, looked up by class
            else:
                attrs[n.attr.value] = None
                todo.append(n.value)
            static |= name_kinds(n.attr.value)
            continue
        if t is cst.SimpleString:
            if P.VAL_STRING.search(n.value):
                static.add(VAL)
            if P.TRAIN_STRING.search(n.value):
                static.add(TRAIN)
            continue
        if t is cst.Call:
            calls.append((n, None))
            if P.VAL_CALL.search(P.last_part(dotted(n.func))):
                static.add(VAL)
            todo.append(n.func)
            continue
        todo.extend(children(n))
    got = _LEAVES[id(node)] = (frozenset(static), tuple(names), tuple(attrs), tuple(calls), tuple(own))
    return got


def local_taint(prog: Program, func: Func, seed: dict[str, set[str]]) -> dict[str, set[str]]:
    """A function's local taint when its parameters carry `seed` (one call context), cached per seed."""
    key = (func.qname, tuple(sorted((k, tuple(sorted(v))) for k, v in seed.items())))
    cache = prog.memo.setdefault("call_contexts", {})
    if key not in cache:
        local = {k: set(v) for k, v in seed.items()}
        fixpoint(prog, func, local)
        cache[key] = local
    return cache[key]


def fixpoint(prog: Program, func: Func, local: dict[str, set[str]]) -> bool:
    grew = False
    binds = prog.binds[func.qname][0]
    for _inner in range(4):
        inner = False
        for value, names, aug_target in binds:
            kinds = prog.expr_taint(value, func, local)
            if aug_target is not None:
                kinds = kinds | prog.expr_taint(aug_target, func, local)
            if not kinds:
                continue
            for name in names:
                if name.startswith("."):
                    if prog.blind_self:
                        continue
                    keys = (name[1:], f"{func.cls}.{name[1:]}") if func.cls else (name[1:],)
                    for key in keys:
                        if not kinds <= prog.attr_taint.get(key, set()):
                            prog.attr_taint[key] = prog.attr_taint.get(key, set()) | kinds
                            inner = grew = True
                    continue
                if not kinds <= local.get(name, set()):
                    local[name] = local.get(name, set()) | kinds
                    prog.tainted_names.add(name)
                    inner = grew = True
        if not inner:
            break
    return grew


def compute_taint(prog: Program) -> None:
    funcs = list(prog.funcs.values())
    prog.taint = {f.qname: {} for f in funcs}
    prog.param_taint = {f.qname: {} for f in funcs}
    prog.binds.update({f.qname: bindings(f) for f in funcs})
    prog.binds["<module>"][0].extend(class_bindings(prog))
    prog.self_bound = {f"{f.cls}.{n[1:]}" for f in funcs if f.cls for _v, names, _a in prog.binds[f.qname][0]
                       for n in names if n.startswith(".")}
    callees = {f.qname: [(c, prog.resolve_call(c, f)) for c in prog.binds[f.qname][2]] for f in funcs}
    for _ in range(8):
        changed = False
        for func in funcs:
            rets = prog.binds[func.qname][1]
            intrinsic: dict[str, set[str]] = {}
            fixpoint(prog, func, intrinsic)
            ret: set[str] = set()
            for r in rets:
                ret |= prog.expr_taint(r, func, intrinsic)
            if not ret <= prog.return_taint.get(func.qname, set()):
                prog.return_taint[func.qname] = prog.return_taint.get(func.qname, set()) | ret
                changed = True
            changed |= _element_returns(prog, func, intrinsic)
            local = prog.taint[func.qname]
            for p, kinds in prog.param_taint[func.qname].items():
                if not kinds <= local.get(p, set()):
                    local[p] = local.get(p, set()) | kinds
                    prog.tainted_names.add(p)
                    changed = True
            changed |= fixpoint(prog, func, local)
            if func.qname == "<module>":
                prog.global_taint = local
            for call, callee in callees[func.qname]:
                if callee is None:
                    continue
                pt = prog.param_taint[callee.qname]
                for pname, kinds in bind_args(prog, call, callee, func).items():
                    if not kinds <= pt.get(pname, set()):
                        pt[pname] = pt.get(pname, set()) | kinds
                        changed = True
        if not changed:
            break
    # methods some code calls on an object (`train_loader.next_batch()`): what they return of their own
    on_objects = {callee.qname for q, pairs in callees.items() for call, callee in pairs
                  if callee is not None and callee.cls is not None and type(call.func) is cst.Attribute
                  and not (type(call.func.value) is cst.Name and call.func.value.value in ("self", "cls"))}
    prog.blind_self = True
    try:
        for func in funcs:
            if func.qname not in on_objects:
                continue
            own: dict[str, set[str]] = {}
            fixpoint(prog, func, own)
            ret: set[str] = set()
            for r in prog.binds[func.qname][1]:
                ret |= prog.expr_taint(r, func, own)
            prog.return_own[func.qname] = ret
    finally:
        prog.blind_self = False


def _element_returns(prog: Program, func: Func, intrinsic: dict[str, set[str]]) -> bool:
    """What each slot of a function's fixed-size tuple return carries of its own (`return args, luts, val_tokens`):
    `args, luts, val_tokens = setup()` then gives `args` only what the first slot holds. Grows monotonically."""
    elements = prog.tuple_returns(func)
    if elements is None:
        return False
    have = prog.return_elements.setdefault(func.qname, [set() for _ in elements])
    grew = False
    for i, exprs in enumerate(elements):
        kinds = set().union(*(prog.expr_taint(e, func, intrinsic) for e in exprs))
        if not kinds <= have[i]:
            have[i] |= kinds
            grew = True
    return grew
