"""Ordered events of a program run: what is scored, what is updated, in which loop, in which order.

Each function body becomes a tree of items (events, loops, branches, grad-mode blocks, calls); calls into
the script's own functions are expanded in place, so the whole run from the entry point linearizes into
`Occ` records that carry their loop nesting, branch arms and position in every enclosing sequence. The
legality rules are questions over that list: "is this update preceded, in the same loop iteration, by a
score of the same tokens?", "is a score repeated after an update?".
"""
from __future__ import annotations

import itertools
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Sequence

import libcst as cst

from audits import patterns as P
from audits.consteval import UNKNOWN
from audits.configuration import branch_value, range_len
from audits.functions import Func, bind_args, call_arguments, func_nodes_of
from audits.program import Program
from audits.syntax import (MUTATOR_METHODS, assignment_edges, backward_closure, binding_targets, block_of, dotted, names_in,
                           pairs, root_name)
from audits.taint import TARGET, TRAIN, VAL, local_taint
from audits.walk import children, module_cache, walk

# event kinds
SCORE, ACC, RESET, UPDATE, BACKWARD, RESTORE, QUANT, CALIB, TRAIN_READ, CACHE_UPDATE, NET, OPT_NEW = (
    "score", "acc", "reset", "update", "backward", "restore", "quant", "calib", "train_read", "cache_update",
    "net", "opt_new")


@dataclass
class Event:
    kind: str
    node: cst.CSTNode
    line: int
    func: Func
    taint: frozenset = frozenset()
    name: str = ""  # accumulator / receiver / callee
    detail: dict = field(default_factory=dict)


@dataclass
class Loop:
    kind: str  # "repeat" (same data each iteration) or "data" (iterates over data)
    node: cst.CSTNode
    line: int
    why: str
    body: list


@dataclass
class Branch:
    node: cst.CSTNode
    line: int
    arms: list  # list[list[item]]


@dataclass
class GradBlock:
    mode: str  # "no_grad" | "inference_mode" | "enable_grad"
    node: cst.CSTNode
    line: int
    body: list


@dataclass
class CallItem:
    node: cst.Call
    line: int
    callee: Func
    # A function handed to a script function that calls it (`timed_eval("q", eval_val, model, val_tokens)`): it
    # runs inside that call with whatever the call was given, so each of its parameters gets every argument's taint.
    forwarded: bool = False
    env: ChainMap | None = None  # the caller's names at the call (flow-sensitive), for binding the arguments


@dataclass(frozen=True)
class LoopCtx:
    uid: int
    kind: str
    line: int
    func: str


@dataclass
class Occ:
    """One event as it occurs in the linearized run."""

    ev: Event
    order: int
    loops: tuple  # LoopCtx, outermost first
    arms: tuple  # (branch uid, arm index)
    path: tuple  # (seq uid, index, item line, function) for every enclosing sequence, outermost first
    grad: str  # innermost grad mode ("" when grad is enabled by default)
    chain: tuple  # qnames of the expanded call chain
    taint: frozenset = frozenset()  # the event's effective taint (updates: what fed the gradient)
    slot: bool = False

    @property
    def kind(self) -> str:
        return self.ev.kind

    @property
    def line(self) -> int:
        return self.ev.line

    def innermost(self, kind: str) -> LoopCtx | None:
        return next((lp for lp in reversed(self.loops) if lp.kind == kind), None)


def exclusive(a: Occ, b: Occ) -> bool:
    """True when the two events sit in different arms of one branch: they never run together."""
    arms_a = dict(a.arms)
    return any(uid in arms_a and arms_a[uid] != arm for uid, arm in b.arms)


def common_split(a: Occ, b: Occ) -> tuple[int, int] | None:
    """Lines of the items that contain `a` and `b` in the deepest sequence enclosing both."""
    for (sa, ia, la, _qa), (sb, ib, lb, _qb) in zip(a.path, b.path):
        if sa != sb:
            return None
        if ia != ib:
            return la, lb
    return None


# -- per-function trees ----------------------------------------------------------------------------------

@dataclass
class FuncFacts:
    reported: set[str]
    accumulated: set[str]  # names added into an accumulator of this function (`loss_sum += chunk_nll`)
    optimizers: set[str]
    slot_optimizers: set[str]
    leaves: set[str]
    # Optimizers over a module built in this function that never leaves it (a diagnostic probe `nn.Linear` fitted
    # and scored here): their steps cannot change what scores outside this call.
    contained_optimizers: set[str] = field(default_factory=set)


def _reported_names(prog: Program, func: Func) -> set[str]:
    """Names whose value reaches what the function returns or logs as val_loss/val_bpb (the reported score)."""
    seeds: set[str] = set()
    assigns: list[tuple[set[str], set[str]]] = []
    for n in func_nodes_of(func, cst.Return, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Call):
        if type(n) is cst.Return and n.value is not None:
            seeds |= names_in(n.value)
        elif type(n) in (cst.Assign, cst.AnnAssign, cst.AugAssign) and n.value is not None:
            for targets, sources in assignment_edges(n):
                if any(P.REPORTED_NAME.search(t) for t in targets if t):
                    seeds |= sources
                assigns.append((targets, sources))
        elif type(n) is cst.Call:
            fn = dotted(n.func)
            last = P.last_part(fn)
            if last in ("add_", "copy_", "addcmul_", "append", "extend") and type(n.func) is cst.Attribute:
                assigns.append(({root_name(n.func.value)}, set().union(*(names_in(a.value) for a in n.args)) if n.args else set()))
            if last in ("print", "log0", "log", "info", "print0", "write") or "log" in last:
                text = "".join(s.value for s in walk(n) if type(s) in (cst.SimpleString, cst.FormattedStringText))
                if P.REPORTED_NAME.search(text):
                    seeds |= names_in(n)
    if type(func.node) is cst.Lambda:
        seeds |= names_in(func.node.body)
    return backward_closure(seeds, assigns)


def _is_optimizer_ctor(prog: Program, call: cst.Call) -> bool:
    fn = dotted(call.func)
    resolved = prog.imports.get(fn.split(".")[0], fn.split(".")[0])
    full = resolved + fn[len(fn.split(".")[0]):]
    last = P.last_part(fn)
    if "optim" in full.split(".")[:-1] or full.startswith("torch.optim"):
        return last[:1].isupper()
    if P.OPTIMIZER_CLASS.search(last) and last[:1].isupper():
        return True
    bases = prog.class_bases.get(last, [])
    return any(P.OPTIMIZER_CLASS.search(P.last_part(b)) for b in bases)


def function_facts(prog: Program, func: Func) -> FuncFacts:
    cache = prog.memo.setdefault("facts", {})
    if func.qname in cache:
        return cache[func.qname]
    optimizers, slot_opts, leaves, contained = set(), set(), set(), set()
    for n in func_nodes_of(func, cst.Assign):
        if type(n.value) is cst.Call:
            targets = [root_name(t.target) for t in n.targets]
            call = n.value
            if _is_optimizer_ctor(prog, call):
                optimizers.update(t for t in targets if t)
                params = names_in(call.args[0].value) if call.args else set()
                if params & leaves:
                    slot_opts.update(t for t in targets if t)
                owner = _parameters_owner(call)
                if owner and _stays_local(func, owner):
                    contained.update(t for t in targets if t)
            elif any(a.keyword and a.keyword.value == "requires_grad" and dotted(a.value) == "True" for a in call.args):
                leaves.update(t for t in targets if t)
            elif type(call.func) is cst.Attribute and call.func.attr.value == "requires_grad_":
                leaves.update(t for t in targets if t)
    for n in func_nodes_of(func, cst.For):
        # `for o in opts: o.step()` — the loop variable of an optimizer collection is an optimizer
        if type(n.target) is cst.Name:
            coll = root_name(n.iter)
            if coll in optimizers or P.OPTIMIZER_NAME.search(coll or "") or (
                    type(n.iter) in (cst.List, cst.Tuple) and
                    any(root_name(e.value) in optimizers or P.OPTIMIZER_NAME.search(root_name(e.value) or "")
                        for e in n.iter.elements)):
                optimizers.add(n.target.value)
    accumulated: set[str] = set()
    for n in func_nodes_of(func, cst.AugAssign):
        if type(n.operator) is cst.AddAssign:
            accumulated |= names_in(n.value)
    facts = FuncFacts(_reported_names(prog, func), accumulated, optimizers, slot_opts, leaves, contained)
    cache[func.qname] = facts
    return facts


def _parameters_owner(opt_ctor: cst.Call) -> str | None:
    """`Adam(probe.parameters(), ...)` -> `probe`: the one module whose parameters an optimizer steps."""
    if not opt_ctor.args:
        return None
    arg = opt_ctor.args[0].value
    if type(arg) is cst.Call and type(arg.func) is cst.Attribute and arg.func.attr.value in ("parameters",) and \
            type(arg.func.value) is cst.Name:
        return arg.func.value.value
    return None


def _stays_local(func: Func, name: str) -> bool:
    """`name` is built here by a call (`probe = nn.Linear(...)`, possibly `.to(device)`) and only ever called or
    asked for its attributes: never returned, stored, yielded or handed to another call."""
    built = False
    for n in func_nodes_of(func, cst.Assign):
        if any(type(t.target) is cst.Name and t.target.value == name for t in n.targets):
            if type(n.value) is not cst.Call or built:
                return False
            built = True
    if not built or name in func.params:
        return False
    for n in func.statements:
        t = type(n)
        if t in (cst.Return, cst.Yield) and n.value is not None and name in names_in(n.value):
            return False
        if t is cst.Call:
            for a in n.args:
                if name in names_in(a.value) and not _through_call(a.value, name):
                    return False
        if t in (cst.Assign, cst.AugAssign, cst.AnnAssign) and getattr(n, "value", None) is not None and \
                type(n.value) in (cst.Name, cst.Tuple, cst.List, cst.Dict) and name in names_in(n.value):
            return False
    return True


def _through_call(expr: cst.CSTNode, name: str) -> bool:
    """Every mention of `name` in `expr` is the module being run or asked something (`probe(h)`,
    `probe.parameters()`), so only its outputs flow on."""
    allowed: set[int] = set()
    mentions: list[cst.Name] = []
    for n in walk(expr):
        if type(n) is cst.Call:
            f = n.func
            if type(f) is cst.Name and f.value == name:
                allowed.add(id(f))
            elif type(f) is cst.Attribute and type(f.value) is cst.Name and f.value.value == name:
                allowed.add(id(f.value))
        elif type(n) is cst.Name and n.value == name:
            mentions.append(n)
    return all(id(m) in allowed for m in mentions)


def model_params(prog: Program, func: Func) -> frozenset[str]:
    """Parameters a function uses as a module: called (`model(x)`) or asked for its modules, parameters or hooks."""
    cache = prog.memo.setdefault("model_params", {})
    got = cache.get(func.qname)
    if got is None:
        params = set(func.params)
        found = set()
        for call in func_nodes_of(func, cst.Call):
            f = call.func
            if type(f) is cst.Name and f.value in params:
                found.add(f.value)
            elif type(f) is cst.Attribute and type(f.value) is cst.Name and f.value.value in params and \
                    f.attr.value in P.MODEL_METHODS:
                found.add(f.value.value)
        got = cache[func.qname] = frozenset(found)
    return got


def _join(start: dict[str, set[str]], ends: list[dict[str, set[str]]], local: dict[str, set[str]]) -> dict[str, set[str]]:
    """Names after a branch: what any arm left; a name an arm did not rebind keeps its value from before."""
    out: dict[str, set[str]] = {}
    for name in set().union(*ends) if ends else set():
        kinds: set[str] = set()
        for end in ends:
            kinds |= end.get(name, start.get(name, local.get(name, set())))
        out[name] = kinds
    return out


_BOUND = module_cache()



def _names_bound_in(stmts: Sequence[cst.CSTNode]) -> frozenset[str]:
    """Plain names a block binds anywhere inside it (not in nested definitions)."""
    out: set[str] = set()
    for stmt in stmts:
        got = _BOUND.get(id(stmt))
        if got is None:
            found = set()
            for n in walk(stmt):
                for target in binding_targets(n):
                    for leaf in walk(target):
                        if type(leaf) is cst.Name:
                            found.add(leaf.value)
            got = _BOUND[id(stmt)] = frozenset(found)
        out |= got
    return frozenset(out)


def called_params(prog: Program, func: Func) -> frozenset[str]:
    """Parameters a function calls (`fn(*args)`): the ones through which it runs a function it is handed."""
    cache = prog.memo.setdefault("called_params", {})
    got = cache.get(func.qname)
    if got is None:
        params = set(func.params)
        got = cache[func.qname] = frozenset(
            c.func.value for c in func_nodes_of(func, cst.Call) if type(c.func) is cst.Name and c.func.value in params)
    return got


def _grad_mode(item: cst.WithItem) -> str | None:
    fn = dotted(item.item.func) if type(item.item) is cst.Call else dotted(item.item)
    last = P.last_part(fn)
    if last in ("no_grad", "inference_mode", "enable_grad"):
        if last == "inference_mode" and type(item.item) is cst.Call and item.item.args:
            v = item.item.args[0].value
            if type(v) is cst.Name and v.value == "False":
                return "enable_grad"
        return last
    return None


class TreeBuilder:
    """Builds the item tree of one function; `prune` drops branches the configuration cannot take."""

    def __init__(self, prog: Program, func: Func, prune: bool, local: dict[str, set[str]]):
        self.prog = prog
        self.func = func
        self.prune = prune
        self.local = local  # this call context's taint of the function's names, whole function (flow-insensitive)
        # Names (re)bound so far on the way through the body, in statement order: a plain assignment replaces what
        # a name carried, so `x, y` reused for validation slices in one block do not taint the training batches
        # bound to `x, y` elsewhere. Names not bound yet are looked up in `local`.
        self.env: dict[str, set[str]] = {}
        self.facts = function_facts(prog, func)

    def view(self) -> ChainMap:
        return ChainMap(self.env, self.local)

    def snapshot(self) -> ChainMap:
        """The names as they stand at this point, kept for a call expanded later."""
        return ChainMap(dict(self.env), self.local)

    def taint(self, node: cst.CSTNode) -> set[str]:
        return self.prog.expr_taint(node, self.func, self.view())

    def bind(self, target: cst.CSTNode, value: cst.CSTNode, weak: bool = False, unpack_calls: bool = False) -> None:
        """Record what a binding puts in its names: replaced for a plain name, added for an item or augmented write."""
        for sub_value, names in pairs(target, value, unpack_calls):
            kinds = self.taint(sub_value)
            strong = not weak and type(target) in (cst.Name, cst.Tuple, cst.List)
            for name in names:
                if name.startswith("."):
                    continue
                self.env[name] = set(kinds) if strong else self.view().get(name, set()) | kinds

    def branch(self, arms: list[Sequence[cst.CSTNode] | None]) -> list[list]:
        """Build each arm from the same state; afterwards a name carries what any arm left in it."""
        start = dict(self.env)
        built, ends = [], []
        for arm in arms:
            self.env = dict(start)
            built.append(self.block(arm) if arm is not None else [])
            ends.append(self.env)
        self.env = _join(start, ends, self.local)
        return built

    def loop_body(self, stmts: Sequence[cst.CSTNode], binds_target: tuple[cst.CSTNode, cst.CSTNode] | None = None) -> list:
        """A loop body runs zero or more times: names it rebinds enter each iteration as whatever any iteration
        may leave (their whole-function taint), and leave as before or after the body."""
        start = dict(self.env)
        for name in _names_bound_in(stmts):
            self.env[name] = self.view().get(name, set()) | self.local.get(name, set())
        if binds_target is not None:
            self.bind(*binds_target)
        items = self.block(stmts)
        self.env = _join(start, [start, self.env], self.local)
        return items

    def block(self, stmts: Sequence[cst.CSTNode]) -> list:
        items: list = []
        for stmt in stmts:
            if type(stmt) in (cst.FunctionDef, cst.ClassDef):
                continue
            if type(stmt) is cst.If:
                taken = self._if(stmt, items)
                if taken is not None and self._exits(taken):
                    break
                continue
            if type(stmt) in (cst.SimpleStatementLine, cst.SimpleStatementSuite):  # `if c: x = y` on one line
                for small in stmt.body:
                    items.extend(self.small(small))
            elif type(stmt) is cst.For:
                items.extend(self.expr_events(stmt.iter))
                if self.prune and range_len(self.prog, stmt.iter) == 0:
                    continue
                kind, why = self.classify_for(stmt)
                items.append(Loop(kind, stmt, self.prog.line(stmt), why, self.loop_body(block_of(stmt), (stmt.target, stmt.iter))))
            elif type(stmt) is cst.While:
                items.extend(self.expr_events(stmt.test))
                if self.prune:
                    v = branch_value(self.prog, stmt.test)
                    if v.value is not UNKNOWN and not v.value:
                        continue
                test = self.prog.node_text(stmt.test)
                kind = "repeat" if P.REPEAT_ITER.search(test) or P.REPEAT_VAR.search(test.split("<")[0].strip()) else "data"
                items.append(Loop(kind, stmt, self.prog.line(stmt), f"`while {test.strip()}`", self.loop_body(block_of(stmt))))
            elif type(stmt) is cst.With:
                mode = None
                for wi in stmt.items:
                    items.extend(self.expr_events(wi.item))
                    mode = _grad_mode(wi) or mode
                    if wi.asname is not None:
                        self.bind(wi.asname.name, wi.item)
                body = self.block(block_of(stmt))
                if mode:
                    items.append(GradBlock(mode, stmt, self.prog.line(stmt), body))
                else:
                    items.extend(body)
            elif type(stmt) is cst.Try:
                items.extend(self.block(block_of(stmt)))
                for h in stmt.handlers:
                    items.extend(self.block(block_of(h)))
                items.extend(self.block(block_of(stmt.orelse)))
                items.extend(self.block(block_of(stmt.finalbody)))
            elif type(stmt) is cst.Match:
                items.append(Branch(stmt, self.prog.line(stmt), self.branch([block_of(c) for c in stmt.cases] + [None])))
            elif isinstance(stmt, cst.CSTNode) and not isinstance(stmt, cst.BaseStatement):
                items.extend(self.expr_events(stmt))  # a lambda body
        return items

    @staticmethod
    def _exits(block: Sequence[cst.CSTNode]) -> bool:
        if not block:
            return False
        last = block[-1]
        return type(last) is cst.SimpleStatementLine and any(type(s) in (cst.Return, cst.Raise) for s in last.body)

    def _if(self, stmt: cst.If, items: list):
        """Append the if/elif chain; returns the statements of the arm known to be taken, if any."""
        items.extend(self.expr_events(stmt.test))
        if self.prune:
            v = branch_value(self.prog, stmt.test)
            if v.value is not UNKNOWN:
                if v.value:
                    items.extend(self.block(block_of(stmt)))
                    return block_of(stmt)
                if type(stmt.orelse) is cst.If:
                    return self._if(stmt.orelse, items)
                if stmt.orelse is not None:
                    items.extend(self.block(block_of(stmt.orelse)))
                    return block_of(stmt.orelse)
                return None
        if type(stmt.orelse) is cst.If:
            start = dict(self.env)
            body = self.block(block_of(stmt))
            after_body, self.env = self.env, dict(start)
            sub: list = []
            self._if(stmt.orelse, sub)
            self.env = _join(start, [after_body, self.env], self.local)
            arms = [body, sub]
        else:
            arms = self.branch([block_of(stmt), block_of(stmt.orelse) if stmt.orelse is not None else None])
        items.append(Branch(stmt, self.prog.line(stmt), arms))
        return None

    def classify_for(self, stmt: cst.For) -> tuple[str, str]:
        target = self.prog.node_text(stmt.target).strip()
        it = self.prog.node_text(stmt.iter).strip()
        if P.REPEAT_ITER.search(it) or dotted(stmt.iter.func if type(stmt.iter) is cst.Call else stmt.iter).endswith("repeat"):
            return "repeat", f"`for {target} in {it}` repeats over the same data"
        vars_ = names_in(stmt.target)
        if P.REPEAT_VAR.match(target):
            return "repeat", f"`for {target} in {it}` is an epoch/pass loop"
        used = set()
        for s in block_of(stmt):
            used |= names_in(s)
        if not (vars_ & used):
            return "repeat", f"`for {target} in {it}` does not use its loop variable"
        return "data", ""

    def small(self, node: cst.CSTNode) -> list:
        prog, func = self.prog, self.func
        items: list = []
        if type(node) in (cst.Import, cst.ImportFrom):
            mod = (cst.helpers.get_full_name_for_node(node.module) if type(node) is cst.ImportFrom and node.module
                   else None)
            names = [cst.helpers.get_full_name_for_node(a.name) or "" for a in node.names] if type(node.names) is not cst.ImportStar else []
            full = [f"{mod}.{n}" for n in names] if mod else names
            for name in full + ([mod] if mod else []):
                if P.is_network_module(name):
                    items.append(Event(NET, node, prog.line(node), func, name=name))
                    break
            return items
        if type(node) is cst.Assign:
            items.extend(self.expr_events(node.value))
            for t in node.targets:
                self.bind(t.target, node.value, unpack_calls=True)
            for t in node.targets:
                target = t.target
                if type(target) is cst.Subscript:
                    items.extend(self.expr_events(target.slice[0].slice) if target.slice else [])
                    items.append(self.acc(node, target, node.value))
                elif type(target) in (cst.Name, cst.Attribute):
                    name = root_name(target)
                    # `best = torch.minimum(best, nll)` (self-update) or `chunk_nll = ...` that the function adds to
                    # its reported sum later: each pass overwrites what is reported
                    if name in self.facts.reported and _lossy_value(node.value) and (
                            name in names_in(node.value) or name in self.facts.accumulated):
                        ev = self.acc(node, target, node.value)
                        ev.detail["assign"] = True  # `best = torch.minimum(best, nll)`: overwritten, not added
                        items.append(ev)
                    if _is_zero(node.value):
                        items.append(Event(RESET, node, prog.line(node), func, name=name))
                    if type(node.value) is cst.Call and _is_optimizer_ctor(prog, node.value):
                        items.append(Event(OPT_NEW, node, prog.line(node), func, name=name))
            return items
        if type(node) is cst.AnnAssign:
            if node.value is None:
                return []
            items.extend(self.expr_events(node.value))
            self.bind(node.target, node.value, unpack_calls=True)
            return items
        if type(node) is cst.AugAssign:
            items.extend(self.expr_events(node.value))
            self.bind(node.target, node.value, weak=True)
            if _has_grad(node.value) and type(node.operator) in (cst.SubtractAssign, cst.AddAssign):
                items.append(Event(UPDATE, node, prog.line(node), func, name=root_name(node.target), detail={"manual": True}))
            else:
                items.append(self.acc(node, node.target, node.value))
            return items
        if type(node) in (cst.Expr, cst.Return):
            return self.expr_events(node.value) if node.value is not None else []
        return self.expr_events(node) if isinstance(node, cst.BaseExpression) else []

    def consumed(self, node: cst.Call) -> set[str]:
        """What a call reads: its receiver and every argument (not what it returns)."""
        kinds = self.taint(node.func)
        for arg in node.args:
            kinds |= self.taint(arg.value)
        return kinds

    def calibration_data_taint(self, node: cst.Call, callee: Func | None) -> set[str]:
        """What a calibration call reads as data: every argument but the model it calibrates."""
        kinds: set[str] = set()
        models = model_params(self.prog, callee) if callee is not None else frozenset()
        pairs = call_arguments(node, callee) if callee is not None else [(None, a) for a in node.args]
        for pname, arg in pairs:
            if pname in models or (callee is None and P.MODEL_NAME.search(root_name(arg.value) or "")):
                continue
            kinds |= self.taint(arg.value)
        return kinds

    def acc(self, stmt: cst.CSTNode, target: cst.CSTNode, value: cst.CSTNode) -> Event:
        name = root_name(target)
        taint = self.taint(value) | self.taint(target)
        return Event(ACC, stmt, self.prog.line(stmt), self.func, frozenset(taint), name,
                     {"target": target, "value": value})

    def expr_events(self, expr: cst.CSTNode | None) -> list:
        """Events of the calls in an expression, inner calls first (evaluation order)."""
        if expr is None:
            return []
        out: list = []
        for call in _calls_in_order(expr):
            out.extend(self.call(call))
        return out

    def call(self, node: cst.Call) -> list:
        prog, func, facts = self.prog, self.func, self.facts
        line = prog.line(node)
        fn, recv_node = _callee(node)
        last = P.last_part(fn)
        recv = dotted(recv_node) if recv_node is not None else ""
        items: list = []
        if last in MUTATOR_METHODS and recv_node is not None and node.args:
            self._mutated(node, recv_node)
        resolved = prog.resolve_call(node, func)
        if last == "step" and recv_node is not None:
            rname = root_name(recv_node)
            if not P.NOT_OPTIMIZER.search(recv) and (rname in facts.optimizers or P.OPTIMIZER_NAME.search(rname)):
                items.append(Event(UPDATE, node, line, func, name=rname,
                                   detail={"slot": rname in facts.slot_optimizers, "closure": [a.value for a in node.args],
                                           "contained": rname in facts.contained_optimizers}))
                return items
        if last == "backward" and recv_node is not None:
            return [Event(BACKWARD, node, line, func, frozenset(self.taint(recv_node)), name=recv)]
        if fn in ("torch.autograd.grad", "autograd.grad") and node.args:
            return [Event(BACKWARD, node, line, func, frozenset(self.taint(node.args[0].value)))]
        if last in ("add_", "sub_", "copy_", "addcdiv_", "addcmul_", "lerp_", "mul_") and any(_has_grad(a.value) for a in node.args):
            return [Event(UPDATE, node, line, func, name=root_name(recv_node), detail={"manual": True})]
        if last in ("add_", "copy_", "addcmul_", "index_add_", "scatter_add_", "append", "extend") and recv_node is not None:
            value = node.args[-1].value if node.args else node
            items.append(self.acc(node, recv_node, value))
        if last in ("zero_", "fill_") and recv_node is not None:
            items.append(Event(RESET, node, line, func, name=root_name(recv_node)))
        items.extend(self._effects(node, fn, recv_node, resolved))
        if resolved is not None and resolved is not func:
            items.append(CallItem(node, line, resolved, env=self.snapshot()))
            items.extend(self.handed_functions(node, resolved))
        return items

    def _mutated(self, node: cst.Call, recv_node: cst.CSTNode) -> None:
        """`windows.append((x, y))`: the container now holds what it was given."""
        name = root_name(recv_node)
        if name and name not in ("self", "cls"):
            kinds = set().union(*(self.taint(a.value) for a in node.args))
            if kinds:
                self.env[name] = self.view().get(name, set()) | kinds

    def _effects(self, node: cst.Call, fn: str, recv_node: cst.CSTNode | None, resolved: Func | None) -> list:
        """Restores, quantization, calibration, network, training-data reads and cache fills a call makes."""
        func, line, last = self.func, self.prog.line(node), P.last_part(fn)
        recv = dotted(recv_node) if recv_node is not None else ""
        items: list = []
        if P.RESTORE_CALL.search(last) and resolved is None:
            # torch's own restores; a script helper named `restore_*` is judged by what its body does when it is
            # expanded (a dtype cast named `restore_fp32_params` restores nothing)
            items.append(Event(RESTORE, node, line, func, name=recv or fn))
        elif last == "copy_" and recv_node is not None and not any(_has_grad(a.value) for a in node.args) and \
                (recv.endswith(".data") or root_name(recv_node) in P.PARAM_NAMES):
            items.append(Event(RESTORE, node, line, func, name=recv))  # `p.data.copy_(saved[name])`
        if P.QUANT_CALL.search(fn) and not P.CALIB_CALL.search(fn) and not P.DEQUANT_CALL.search(fn):
            items.append(Event(QUANT, node, line, func, name=fn))
        if P.CALIB_CALL.search(last):
            items.append(Event(CALIB, node, line, func, frozenset(self.calibration_data_taint(node, resolved)), name=fn))
        if P.NETWORK_CALLS.search(fn):
            items.append(Event(NET, node, line, func, name=fn))
        if last in ("next_batch", "take", "load_data_shard", "load_shard", "read_shard", "fromfile", "memmap") or fn == "next":
            taint = self.consumed(node)
            if TRAIN in taint:
                items.append(Event(TRAIN_READ, node, line, func, frozenset(taint), name=fn))
        if P.CACHE_UPDATE_METHOD.match(last) and recv_node is not None and \
                P.CACHE_TABLE.search(root_name(recv_node)):
            taint = self.consumed(node)
            items.append(Event(CACHE_UPDATE, node, line, func, frozenset(taint), name=root_name(recv_node)))
        return items

    def handed_functions(self, node: cst.Call, callee: Func) -> list:
        """Functions passed to a script function that calls them: a lambda's body runs here, in this function's
        scope; a named script function runs as a call fed by the call's arguments."""
        called = called_params(self.prog, callee)
        if not called:
            return []
        items: list = []
        for pname, arg in call_arguments(node, callee):
            if pname not in called:
                continue
            value = arg.value
            if type(value) is cst.Lambda:
                items.extend(self.expr_events(value.body))
            elif type(value) in (cst.Name, cst.Attribute):
                target = self.prog.resolve_callee(value, self.func)
                if target is not None and target is not self.func and type(target.node) is cst.FunctionDef:
                    items.append(CallItem(node, self.prog.line(node), target, forwarded=True, env=self.snapshot()))
        return items


_CALLS = module_cache()


def _callee(node: cst.Call) -> tuple[str, cst.CSTNode | None]:
    """The dotted name a call runs and its receiver; `getattr(opt, "step")()` is `opt.step`."""
    fn = dotted(node.func)
    recv_node = node.func.value if type(node.func) is cst.Attribute else None
    if type(node.func) is cst.Call and dotted(node.func.func) == "getattr" and len(node.func.args) >= 2:
        attr = node.func.args[1].value
        if type(attr) is cst.SimpleString and isinstance(attr.evaluated_value, str):
            fn = f"{dotted(node.func.args[0].value)}.{attr.evaluated_value}"
            recv_node = node.func.args[0].value
    return fn, recv_node


def _calls_in_order(node: cst.CSTNode) -> tuple[cst.Call, ...]:
    """The calls of an expression in evaluation order (inner first), not entering lambdas; cached per node,
    since every call context of a function rebuilds its tree."""
    got = _CALLS.get(id(node))
    if got is None:
        out: list[cst.Call] = []
        _post_order_calls(node, out)
        got = _CALLS[id(node)] = tuple(out)
    return got


def _post_order_calls(node: cst.CSTNode, out: list) -> None:
    if type(node) in (cst.Lambda, cst.FunctionDef, cst.ClassDef):
        return
    for child in children(node):
        _post_order_calls(child, out)
    if type(node) is cst.Call:
        out.append(node)


def _is_zero(node: cst.CSTNode) -> bool:
    if type(node) in (cst.Integer, cst.Float):
        return float(node.value.replace("_", "")) == 0
    if type(node) is cst.Call:
        last = P.last_part(dotted(node.func))
        return last in ("zeros", "zeros_like", "zero_", "tensor") and (last != "tensor" or (
            bool(node.args) and type(node.args[0].value) in (cst.Integer, cst.Float) and _is_zero(node.args[0].value)))
    return False


def _has_grad(node: cst.CSTNode) -> bool:
    return any(type(n) is cst.Attribute and n.attr.value == "grad" for n in walk(node))


# -- linearization ---------------------------------------------------------------------------------------

MAX_DEPTH = 10
MAX_OCCS = 200_000


class Linearizer:
    """Expands calls into their callees' trees and numbers every event in run order."""

    def __init__(self, prog: Program, prune: bool):
        self.prog = prog
        self.prune = prune
        self.trees: dict[str, list] = {}
        self.occs: list[Occ] = []
        self.loop_items: dict[int, tuple[Loop, tuple, tuple]] = {}  # loop uid -> (loop, path, chain)
        self.loop_locals: dict[int, dict[str, set[str]]] = {}  # loop uid -> its call context's local taint
        self._uid = itertools.count(1)
        self.truncated = False

    def tree(self, func: Func, local: dict[str, set[str]]) -> list:
        key = (func.qname, id(local))
        if key not in self.trees:
            self.trees[key] = []  # recursion guard
            self.trees[key] = TreeBuilder(self.prog, func, self.prune, local).block(func.body)
        return self.trees[key]

    def run(self, root: Func) -> list[Occ]:
        local = self.prog.taint[root.qname]
        self._seq(self.tree(root, local), root, local, (), (), (), "", (root.qname,))
        self._assign_update_taint()
        return self.occs

    def _seq(self, items: list, func: Func, local, loops, arms, path, grad, chain) -> None:
        sid = next(self._uid)
        for i, item in enumerate(items):
            p = path + ((sid, i, item.line, func.qname),)
            if len(self.occs) >= MAX_OCCS:
                self.truncated = True
                return
            if isinstance(item, Event):
                self.occs.append(Occ(item, len(self.occs), loops, arms, p, grad, chain, item.taint))
            elif isinstance(item, Loop):
                uid = next(self._uid)
                self.loop_items[uid] = (item, p, chain)
                self.loop_locals[uid] = local
                ctx = LoopCtx(uid, item.kind, item.line, chain[-1])
                self._seq(item.body, func, local, loops + (ctx,), arms, p, grad, chain)
            elif isinstance(item, Branch):
                bid = next(self._uid)
                for k, arm in enumerate(item.arms):
                    self._seq(arm, func, local, loops, arms + ((bid, k),), p, grad, chain)
            elif isinstance(item, GradBlock):
                self._seq(item.body, func, local, loops, arms, p, "" if item.mode == "enable_grad" else item.mode, chain)
            elif isinstance(item, CallItem):
                callee = item.callee
                if callee.qname in chain or len(chain) >= MAX_DEPTH:
                    continue
                at_call = item.env if item.env is not None else local
                if item.forwarded:
                    given = set().union(*(self.prog.expr_taint(a.value, func, at_call) for a in item.node.args))
                    seed = {p: set(given) for p in callee.params if p not in ("self", "cls")} if given else {}
                else:
                    seed = bind_args(self.prog, item.node, callee, func, at_call)
                callee_local = local_taint(self.prog, callee, seed)
                self._seq(self.tree(callee, callee_local), callee, callee_local, loops, arms, p, grad,
                          chain + (callee.qname,))

    def _assign_update_taint(self) -> None:
        """An update is fed by the gradient of the most recent backward in the same call chain."""
        last_bw: Occ | None = None
        for o in self.occs:
            if o.kind == BACKWARD:
                last_bw = o
            elif o.kind == UPDATE:
                if last_bw is not None and o.chain[: len(last_bw.chain)] == last_bw.chain[: len(o.chain)] and \
                        not exclusive(last_bw, o):
                    o.taint = last_bw.taint
                else:
                    closure_taint: set[str] = set()
                    for c in o.ev.detail.get("closure", []):
                        f = self.prog.resolve_callee(c, o.ev.func) if type(c) in (cst.Name, cst.Attribute) else None
                        if f is not None:
                            closure_taint |= self.prog.return_taint.get(f.qname, set())
                            closure_taint |= set().union(*self.prog.taint.get(f.qname, {}).values()) if self.prog.taint.get(f.qname) else set()
                    o.taint = frozenset(closure_taint)
                o.slot = bool(o.ev.detail.get("slot"))


def _lossy_value(value: cst.CSTNode | None) -> bool:
    """Is the accumulated value a loss (`nll[j, a:b].sum()`, `F.cross_entropy(...)`), not a byte or token count?"""
    if value is None:
        return False
    if type(value) in (cst.Tuple, cst.List):  # results.append((nll.sum(), n_tok, n_bytes))
        return any(_lossy_value(e.value) for e in value.elements)
    names = names_in(value)
    return any(P.SCORE_ACC.search(n) for n in names) and not any(P.COUNT_NAME.search(n) for n in names)


def _loss_derived(prog: Program, func: Func, value: cst.CSTNode | None) -> bool:
    """Is the accumulated value computed, through the function's assignments, from a loss call (`cross_entropy`,
    `log_softmax`, ...)? Names alone miss an accumulator and its inputs renamed to neutral words."""
    if value is None or any(P.COUNT_NAME.search(n) for n in names_in(value)):
        return False
    cache = prog.memo.setdefault("loss_sources", {})
    facts = cache.get(func.qname)
    if facts is None:
        edges: list[tuple[set[str], set[str]]] = []
        losses: set[str] = set()
        for n in func_nodes_of(func, cst.Assign, cst.AnnAssign, cst.AugAssign):
            if n.value is None:
                continue
            for targets, sources in assignment_edges(n):
                edges.append((targets, sources))
            if _calls_loss(n.value):
                losses |= {t for targets, _ in assignment_edges(n) for t in targets}
        facts = cache[func.qname] = (edges, frozenset(losses))
    edges, losses = facts
    if _calls_loss(value):
        return True
    return bool(losses & backward_closure(set(names_in(value)), edges))


def _calls_loss(node: cst.CSTNode) -> bool:
    return any(type(n) is cst.Call and P.LOSS_CALL.search(dotted(n.func) or "") for n in walk(node))


def _string_key(target: cst.CSTNode | None) -> str | None:
    if type(target) is cst.Subscript and len(target.slice) == 1 and type(target.slice[0].slice) is cst.Index:
        v = target.slice[0].slice.value
        if type(v) is cst.SimpleString and isinstance(v.evaluated_value, str):
            return v.evaluated_value
    return None


def classify_scores(prog: Program, occs: list[Occ]) -> None:
    """An accumulation becomes a SCORE when it feeds the function's reported value and holds a loss."""
    for o in occs:
        if o.kind != ACC:
            continue
        facts = function_facts(prog, o.ev.func)
        name = o.ev.name
        key = _string_key(o.ev.detail.get("target"))  # acc["nll"] += ... names the slot
        if P.CACHE_TABLE.search(name) and not P.SCORE_ACC.search(name) and \
                type(o.ev.detail.get("target")) is cst.Subscript:
            o.ev = Event(CACHE_UPDATE, o.ev.node, o.ev.line, o.ev.func, o.ev.taint, name, o.ev.detail)
            continue
        if key is not None and (P.COUNT_NAME.search(key) or not P.SCORE_ACC.search(key)):
            continue
        value = o.ev.detail.get("value")
        if name in facts.reported and not P.NOT_SCORE_ACC.search(name) and (
                P.SCORE_ACC.search(name) or key is not None or _lossy_value(value)
                or _loss_derived(prog, o.ev.func, value)):
            o.ev = Event(SCORE, o.ev.node, o.ev.line, o.ev.func, o.ev.taint, name, o.ev.detail)


@dataclass
class Flow:
    """The linearized run of a program from each root (the entry point, or every function in all-paths mode)."""

    prog: Program
    occs: list[Occ]
    loops: dict[int, tuple[Loop, tuple, tuple]]
    truncated: bool
    loop_locals: dict = field(default_factory=dict)  # loop uid -> local taint of the call context it runs in
    memo: dict = field(default_factory=dict)  # derived once per flow (the orderings)

    def val_scores(self) -> list[Occ]:
        return [o for o in self.occs if o.kind == SCORE and VAL in o.taint]

    def val_updates(self) -> list[Occ]:
        return [o for o in self.occs if o.kind == UPDATE and VAL in o.taint]

    def of_kind(self, *kinds: str) -> list[Occ]:
        return [o for o in self.occs if o.kind in kinds]


def build_flows(prog: Program, prune: bool) -> list[Flow]:
    roots = [prog.funcs["<module>"]]
    if not prune:
        roots += [f for q, f in prog.funcs.items() if q != "<module>" and type(f.node) is cst.FunctionDef]
    flows = []
    lin = Linearizer(prog, prune)
    for root in roots:
        lin.occs, lin.loop_items, lin.loop_locals = [], {}, {}
        occs = lin.run(root)
        classify_scores(prog, occs)
        flows.append(Flow(prog, occs, lin.loop_items, lin.truncated, lin.loop_locals))
    return flows


__all__ = ["Flow", "Occ", "Event", "build_flows", "exclusive", "common_split", "VAL", "TRAIN", "TARGET"]
