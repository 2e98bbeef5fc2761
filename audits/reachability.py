"""Reachability under the configuration: what runs from the entry point, and the regions that cannot run
(a branch its condition rules out, a loop that runs zero times, a function nothing calls), each with its reason
and the environment defaults that alone keep it off."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import libcst as cst

from audits import patterns as P
from audits.configuration import branch_value, default_keys, describe_keys, range_len
from audits.consteval import UNKNOWN
from audits.functions import Func
from audits.syntax import API_METHODS, block_of, child_blocks, exits, header_exprs
from audits.walk import walk

if TYPE_CHECKING:
    from audits.program import Program


@dataclass
class Region:
    start: int
    end: int
    reason: str
    # Environment keys whose *default* keeps this code from running (no --env, run command or log states them):
    # the code is off only as long as nobody sets them, so an illegal path here is a warning that names them.
    default_keys: tuple[str, ...] = ()


class Reachability:
    """Walks what runs from the entry point under the configuration, collecting the regions that cannot run.

    A class rather than nested functions: closures that call each other form a reference cycle holding the
    program and its whole CST, which then outlives the audit until a pass of the cyclic collector."""

    def __init__(self, prog: Program):
        self.prog = prog
        self.regions: list[Region] = []
        self.reachable: set[str] = set()
        self.instantiated: set[str] = set()
        self.seen_stmt: set[int] = set()
        self.blocked: dict[str, tuple[str, ...]] = {}  # function -> keys whose defaults keep its only callers off

    def mark_reachable_in(self, node: cst.CSTNode, scope: Func) -> None:
        prog = self.prog
        for n in walk(node):
            if type(n) is cst.Call:
                callee = prog.resolve_call(n, scope)
                if callee is not None:
                    self.enter(callee)
            elif type(n) is cst.Name:
                f = prog._by_name(n.value, scope)
                if f is not None:
                    self.enter(f)
                if n.value in prog.classes and n.value not in self.instantiated:
                    self.instantiated.add(n.value)
                    init = prog.funcs.get(f"{n.value}.__init__")
                    if init is not None:
                        self.enter(init)
            elif type(n) is cst.Attribute and n.attr.value not in API_METHODS:
                f = prog._method(n.attr.value, scope, type(n.value) is cst.Name and n.value.value in ("self", "cls"))
                if f is not None:
                    self.enter(f)

    def visit_block(self, stmts: Sequence[cst.CSTNode], scope: Func) -> None:
        prog = self.prog
        for i, stmt in enumerate(stmts):
            if id(stmt) in self.seen_stmt:
                continue
            self.seen_stmt.add(id(stmt))
            if type(stmt) in (cst.FunctionDef, cst.ClassDef):
                if type(stmt) is cst.ClassDef:
                    for d in stmt.decorators:
                        self.mark_reachable_in(d, scope)
                continue
            if type(stmt) is cst.If:
                if self.visit_if(stmt, scope) and i + 1 < len(stmts):
                    rest = stmts[i + 1:]
                    v = branch_value(prog, stmt.test)
                    self.regions.append(Region(prog.line(rest[0]), prog.end_line(rest[-1]),
                                               f"after an early exit taken under {describe_keys(prog, v)}"))
                    return
                continue
            if type(stmt) in (cst.While,):
                v = branch_value(prog, stmt.test)
                if v.value is not UNKNOWN and not v.value:
                    self.regions.append(region_of(prog, stmt.body,
                                                   f"loop condition is false under {describe_keys(prog, v)}"))
                    continue
            if type(stmt) is cst.For:
                n_iter = range_len(prog, stmt.iter)
                if n_iter == 0:
                    why = describe_keys(prog, branch_value(prog, stmt.iter.args[-1].value))
                    self.regions.append(region_of(prog, stmt.body, f"loop runs zero times under {why}"))
                    self.mark_reachable_in(stmt.iter, scope)
                    continue
            headers = header_exprs(stmt)
            for h in headers:
                self.mark_reachable_in(h, scope)
            for child in child_blocks(stmt):
                self.visit_block(child, scope)

    def visit_if(self, stmt: cst.If, scope: Func) -> bool:
        """Visit an if/elif chain; True when the taken arm always exits (rest of the block is dead)."""
        prog = self.prog
        self.mark_reachable_in(stmt.test, scope)
        v = branch_value(prog, stmt.test)
        body = block_of(stmt)
        orelse = stmt.orelse
        if v.value is UNKNOWN:
            self.visit_block(body, scope)
            if type(orelse) is cst.If:
                self.visit_if(orelse, scope)
            elif orelse is not None:
                self.visit_block(block_of(orelse), scope)
            return False
        why = describe_keys(prog, v)
        if v.value:
            self.visit_block(body, scope)
            if orelse is not None:
                self.regions.append(region_of(prog, orelse,
                                               f"else-branch not taken: condition is true under {why}"))
            return exits(body)
        region = region_of(prog, stmt.body, f"condition `{code_of(prog, stmt.test)}` is false under {why}")
        region.default_keys = default_keys(prog, v)
        self.regions.append(region)
        if region.default_keys:
            self.note_blocked(stmt.body, scope, region.default_keys)
        if type(orelse) is cst.If:
            return self.visit_if(orelse, scope)
        if orelse is not None:
            self.visit_block(block_of(orelse), scope)
            return exits(block_of(orelse))
        return False

    def note_blocked(self, node: cst.CSTNode, scope: Func, keys: tuple[str, ...]) -> None:
        """Script functions called from code that only a default keeps from running, and what they call."""
        todo = [(node, scope)]
        while todo:
            n, sc = todo.pop()
            for call in walk(n):
                if type(call) is not cst.Call:
                    continue
                f = self.prog.resolve_call(call, sc)
                if f is not None and f.qname not in self.blocked:
                    self.blocked[f.qname] = keys
                    if type(f.node) is cst.FunctionDef:
                        todo.append((f.node.body, f))

    def enter(self, f: Func) -> None:
        if f.qname in self.reachable:
            return
        self.reachable.add(f.qname)
        if type(f.node) is cst.FunctionDef:
            for d in f.node.decorators:
                self.mark_reachable_in(d, f)
            for p in f.node.params.params:
                if p.default is not None:
                    self.mark_reachable_in(p.default, f)
            self.visit_block(f.body, f)
        elif type(f.node) is cst.Lambda:
            self.mark_reachable_in(f.node.body, f)
        else:
            self.visit_block(f.body, f)


def inactive_regions(prog: Program) -> list[Region]:
    """Code that cannot run under the stated configuration, or is never called from the entry point."""
    walker = Reachability(prog)
    walker.enter(prog.funcs["<module>"])
    reachable, instantiated, regions = walker.reachable, walker.instantiated, walker.regions
    # An instantiated class: the framework calls its dunders and hooks (forward, step) without naming them, so
    # a method is entered when it is a dunder or its name is never mentioned; a method the script calls by name
    # is reachable only through such a call (e.g. only from an env-disabled branch → inactive).
    mentioned = prog.identifiers()
    changed = True
    while changed:
        changed = False
        for cls, methods in prog.classes.items():
            if not (cls in instantiated or any(q in reachable for q in methods) or
                    any(P.last_part(b) in instantiated for b in prog.class_bases.get(cls, [])) or
                    any(cls in {P.last_part(b) for b in bases} and other in instantiated
                        for other, bases in prog.class_bases.items())):
                continue
            for q in methods:
                name = prog.funcs[q].name
                if q not in reachable and (name.startswith("__") or name in FRAMEWORK_METHODS or name not in mentioned):
                    walker.enter(prog.funcs[q])
                    changed = True
    for q, f in prog.funcs.items():
        if q not in reachable and type(f.node) is cst.FunctionDef:
            if f.parent and f.parent not in reachable:
                continue  # the enclosing function's region already covers it
            start, _, end, _ = prog.span(f.node)
            regions.append(Region(start, end, f"`{f.name}` is never called from code that runs under this "
                                              "configuration", walker.blocked.get(q, ())))
    return regions


# Called by torch on an instance without the script naming them (`module(x)` runs forward).
FRAMEWORK_METHODS = {"forward", "step", "backward", "extra_repr", "reset_parameters", "_init_weights", "setup_context"}


def code_of(prog: Program, node: cst.CSTNode) -> str:
    text = prog.node_text(node).strip()
    return text if len(text) <= 80 else text[:77] + "..."


def region_of(prog: Program, node: cst.CSTNode, reason: str) -> Region:
    start, _, end, _ = prog.positions.range(node)
    return Region(start, end, reason)
