"""The script's functions: every def, method and named lambda indexed by qualified name, their own statements,
what each binds and returns, and how a call's arguments bind to a callee's parameters."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

import libcst as cst

from audits.syntax import MUTATOR_METHODS, binding_targets, block_of, child_blocks, dotted, flat_targets, pairs, root_name
from audits.walk import walk

if TYPE_CHECKING:
    from audits.program import Program


@dataclass
class Func:
    qname: str
    name: str
    node: cst.CSTNode  # FunctionDef, Lambda, or Module for the entry point
    params: list[str]
    cls: str | None
    parent: str | None

    @cached_property
    def statements(self) -> list[cst.CSTNode]:
        """Every node of the function's own body (not of nested defs), computed once."""
        return [n for stmt in self.body if type(stmt) not in (cst.FunctionDef, cst.ClassDef) for n in walk(stmt)]

    @cached_property
    def by_type(self) -> dict[tuple[type, ...], list[cst.CSTNode]]:
        return {}

    @property
    def body(self) -> Sequence[cst.CSTNode]:
        if type(self.node) is cst.Module:
            return self.node.body
        if type(self.node) is cst.Lambda:
            return [self.node.body]
        body = self.node.body
        return body.body if type(body) is cst.IndentedBlock else [body]


def index_program(prog: Program) -> None:
    """Register every function, method, class, named lambda and import (one recursion over statements;
    a libcst visitor pass over the whole tree costs most of a parse)."""
    _index_block(prog, prog.module.body, None, None, False)


def _add_func(prog: Program, node: cst.CSTNode, name: str, params: list[str], cls_q: str | None,
              fn_q: str | None, in_class: bool) -> str:
    if in_class:
        qname = f"{cls_q}.{name}"
        prog.classes[cls_q].append(qname)
    elif fn_q:
        qname = f"{fn_q}.<locals>.{name}"
    else:
        qname = name
    if qname in prog.funcs:  # redefinition: keep both reachable under distinct keys
        qname = f"{qname}@{len(prog.funcs)}"
    prog.funcs[qname] = Func(qname, name, node, params, cls_q if in_class else None, fn_q)
    return qname


def _index_small(prog: Program, node: cst.CSTNode, fn_q: str | None) -> None:
    if type(node) is cst.Import:
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            local = alias.asname.name.value if alias.asname and type(alias.asname.name) is cst.Name \
                else name.split(".")[0]
            prog.imports.setdefault(local, name if alias.asname else name.split(".")[0])
    elif type(node) is cst.ImportFrom:
        if type(node.names) is cst.ImportStar or node.module is None:
            return
        mod = cst.helpers.get_full_name_for_node(node.module) or ""
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            local = alias.asname.name.value if alias.asname and type(alias.asname.name) is cst.Name else name
            prog.imports.setdefault(local, f"{mod}.{name}")
    elif type(node) is cst.Assign and type(node.value) is cst.Lambda and len(node.targets) == 1 \
            and type(node.targets[0].target) is cst.Name:
        # `step_fn = lambda: opt.step()` makes the lambda callable by that name
        name = node.targets[0].target.value
        qname = f"{fn_q}.<locals>.{name}" if fn_q else name
        if qname not in prog.funcs:
            prog.funcs[qname] = Func(qname, name, node.value, [p.name.value for p in node.value.params.params],
                                     None, fn_q)


def _index_block(prog: Program, stmts, cls_q: str | None, fn_q: str | None, in_class: bool) -> None:
    for stmt in stmts:
        t = type(stmt)
        if t is cst.FunctionDef:
            params = [p.name.value for p in (*stmt.params.posonly_params, *stmt.params.params,
                                             *stmt.params.kwonly_params)]
            q = _add_func(prog, stmt, stmt.name.value, params, cls_q, fn_q, in_class)
            _index_block(prog, block_of(stmt), cls_q, q, False)
        elif t is cst.ClassDef:
            name = stmt.name.value
            prog.classes.setdefault(name, [])
            prog.class_bases[name] = [dotted(a.value) for a in stmt.bases]
            _index_block(prog, block_of(stmt), name, fn_q, True)
        elif t is cst.SimpleStatementLine:
            for sm in stmt.body:
                _index_small(prog, sm, fn_q)
        elif t is cst.SimpleStatementSuite:
            for sm in stmt.body:
                _index_small(prog, sm, fn_q)
        else:
            for child in child_blocks(stmt) + ([block_of(stmt)] if t in (cst.If, cst.Else) else []):
                _index_block(prog, child, cls_q, fn_q, False)
            if t is cst.If and stmt.orelse is not None:
                _index_block(prog, [stmt.orelse] if type(stmt.orelse) is cst.If else block_of(stmt.orelse), cls_q, fn_q,
                             False)


def func_statements(func: Func) -> list[cst.CSTNode]:
    """Every node of a function's own body (not of nested defs), computed once per function."""
    return func.statements


def func_nodes_of(func: Func, *types: type) -> list[cst.CSTNode]:
    """The nodes of these exact types in a function's own body, in walk order (cached per function)."""
    index = func.by_type
    got = index.get(types)
    if got is None:
        got = index[types] = [n for n in func.statements if type(n) in types]
    return got


def bindings(func: Func) -> tuple[list, list, list]:
    """(value, [bound names], aug) pairs, return values, and calls of a function, computed once."""
    binds, rets, calls = [], [], []
    for n in func_statements(func):
        t = type(n)
        value = None
        if t in (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr):
            value = n.value
        elif t in (cst.For, cst.CompFor):
            value = n.iter
        elif t is cst.WithItem and n.asname:
            value = n.item
        elif t in (cst.Return, cst.Yield) and n.value is not None:
            rets.append(n.value.item if type(n.value) is cst.From else n.value)  # a generator returns what it yields
        elif t is cst.Call:
            calls.append(n)
            f = n.func
            if type(f) is cst.Attribute and f.attr.value in MUTATOR_METHODS and n.args:
                name = root_name(f.value)  # `windows.append((x, y))` puts its arguments in `windows`
                if name and name not in ("self", "cls"):
                    binds.extend((a.value, [name], None) for a in n.args)
        if value is None:
            continue
        aug = n.target if t is cst.AugAssign else None
        for target in binding_targets(n):
            for sub_value, names in pairs(target, value, unpack_calls=t in (cst.Assign, cst.AnnAssign)):
                binds.append((sub_value, names, aug))
    if type(func.node) is cst.Lambda:
        rets.append(func.node.body)
    return binds, rets, calls


def class_bindings(prog: Program) -> list:
    """Class-body assignments (`train_files = os.path.join(...)` in Hyperparameters) bind attributes."""
    binds = []
    for stmt in prog.module.body:
        if type(stmt) is cst.ClassDef:
            for n in walk(stmt):
                if type(n) in (cst.Assign, cst.AnnAssign) and n.value is not None:
                    for target in binding_targets(n):
                        for leaf in flat_targets(target):
                            if type(leaf) is cst.Name:
                                binds.append((n.value, ["." + leaf.value], None))
    return binds


def bind_args(prog: Program, call: cst.Call, callee: Func, caller: Func,
              caller_local: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Taint of each parameter of `callee` at one call site."""
    params = [p for p in callee.params if p not in ("self", "cls")]
    out: dict[str, set[str]] = {}
    for i, arg in enumerate(call.args):
        if arg.star:
            continue
        pname = arg.keyword.value if arg.keyword is not None else (params[i] if i < len(params) else None)
        if pname is None:
            continue
        kinds = prog.expr_taint(arg.value, caller, caller_local)
        if kinds:
            out[pname] = out.get(pname, set()) | kinds
    return out


def call_arguments(call: cst.Call, callee: Func) -> list[tuple[str | None, cst.Arg]]:
    """Each argument of a call with the callee parameter it binds (None for `*args`/`**kw` or surplus)."""
    params = [p for p in callee.params if p not in ("self", "cls")]
    out: list[tuple[str | None, cst.Arg]] = []
    for i, arg in enumerate(call.args):
        if arg.star:
            out.append((None, arg))
        elif arg.keyword is not None:
            out.append((arg.keyword.value, arg))
        else:
            out.append((params[i] if i < len(params) else None, arg))
    return out
