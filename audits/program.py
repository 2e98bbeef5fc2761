"""A small program model over the CST: functions, call resolution, configuration values, reachability, taint.

libcst has no control- or data-flow graph; this module builds the little we need. It is deliberately
approximate in one direction only: anything it cannot decide is treated as reachable and possibly tainted,
and rules that need certainty (FAIL) ask for line evidence on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import libcst as cst

from audits import patterns as P
from audits.consteval import UNKNOWN, ConfigScope, Value, evaluate
from audits.positions import Positions, split_lines
from audits.walk import children, module_cache, reset_children_cache, walk

VAL, TRAIN, TARGET = "val", "train", "target"

# Method names never resolved to script-defined methods: they are torch API, and `.step()` is an event.
_API_METHODS = {
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


_LEAVES = module_cache()
_NO_TAINT: frozenset[str] = frozenset()
_NAME_KINDS: dict[str, frozenset[str]] = {}


def _name_kinds(name: str) -> frozenset[str]:
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


def taint_leaves(node: cst.CSTNode) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...], tuple[cst.Call, ...],
                                             tuple[str, ...]]:
    """The parts of an expression that can carry taint, split into what its words say on their own (names,
    attribute names, strings, validation-loading calls) and what needs a lookup: the names and attribute names
    (their bindings), the calls, and the attributes read through `self`/`cls` (bound per class, not across every
    class that has an attribute of that name). The arguments of a call are not part of the expression's own leaves: what a
    call passes on is decided per callee (`expr_taint`), so `train_model(h, val_data)` is not validation data
    just because one argument is. Cached per node."""
    got = _LEAVES.get(id(node))
    if got is not None:
        return got
    static: set[str] = set()
    names: dict[str, None] = {}
    attrs: dict[str, None] = {}
    own: dict[str, None] = {}
    calls: list[cst.Call] = []
    todo = [node]
    while todo:
        n = todo.pop()
        t = type(n)
        if t is cst.Name:
            names[n.value] = None
            static |= _name_kinds(n.value)
            continue
        if t is cst.Attribute:
            if type(n.value) is cst.Name and n.value.value in ("self", "cls"):
                own[n.attr.value] = None  # `self.stream`: the attribute of this class, looked up by class
            else:
                attrs[n.attr.value] = None
                todo.append(n.value)
            static |= _name_kinds(n.attr.value)
            continue
        if t is cst.SimpleString:
            if P.VAL_STRING.search(n.value):
                static.add(VAL)
            if P.TRAIN_STRING.search(n.value):
                static.add(TRAIN)
            continue
        if t is cst.Call:
            calls.append(n)
            if P.VAL_CALL.search(P.last_part(dotted(n.func))):
                static.add(VAL)
            todo.append(n.func)
            continue
        todo.extend(children(n))
    got = _LEAVES[id(node)] = (frozenset(static), tuple(names), tuple(attrs), tuple(calls), tuple(own))
    return got


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
        for value, names in _pairs(target, node.value):
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


@dataclass
class Func:
    qname: str
    name: str
    node: cst.CSTNode  # FunctionDef, Lambda, or Module for the entry point
    params: list[str]
    cls: str | None
    parent: str | None

    @property
    def body(self) -> Sequence[cst.CSTNode]:
        if type(self.node) is cst.Module:
            return self.node.body
        if type(self.node) is cst.Lambda:
            return [self.node.body]
        body = self.node.body
        return body.body if type(body) is cst.IndentedBlock else [body]


@dataclass
class Region:
    start: int
    end: int
    reason: str
    # Environment keys whose *default* keeps this code from running (no --env, run command or log states them):
    # the code is off only as long as nobody sets them, so an illegal path here is a warning that names them.
    default_keys: tuple[str, ...] = ()


@dataclass
class Program:
    module: cst.Module
    text: str
    positions: Positions
    nodes: list[cst.CSTNode]  # every node of the module, nested definitions included, in walk order
    funcs: dict[str, Func] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)  # class name -> method qnames
    class_bases: dict[str, list[str]] = field(default_factory=dict)
    config: ConfigScope | None = None
    taint: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    param_taint: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    return_taint: dict[str, set[str]] = field(default_factory=dict)
    return_own: dict[str, set[str]] = field(default_factory=dict)  # methods: returned taint not read through self
    attr_taint: dict[str, set[str]] = field(default_factory=dict)  # "Class.attr" for self-bindings, and "attr"
    blind_self: bool = False  # while computing `return_own`
    self_bound: set[str] = field(default_factory=set)  # "Class.attr" for every `self.attr = ...` in a method
    global_taint: dict[str, set[str]] = field(default_factory=dict)
    tainted_names: set[str] = field(default_factory=set)  # every name a taint map ever bound (a superset)
    imports: dict[str, str] = field(default_factory=dict)  # local alias -> imported dotted name
    # Facts the engine supplies from outside the tree: modules an absolute import would load from the file's own
    # folder (file names only; never read or run), and the exec calls whose packed payload was (or was not) decoded.
    local_modules: dict[str, str] = field(default_factory=dict)
    resolved_execs: set[int] = field(default_factory=set)
    unpack_failures: list[tuple[cst.Call, str]] = field(default_factory=list)

    def identifiers(self) -> frozenset[str]:
        """Every name and attribute name the module mentions: what `names_in` of any node is a subset of."""
        got = self.__dict__.get("_identifiers")
        if got is None:
            got = self.__dict__["_identifiers"] = frozenset(
                [n.value for n in self.nodes_of(cst.Name)] + [n.attr.value for n in self.nodes_of(cst.Attribute)])
        return got

    def nodes_of(self, *types: type) -> list[cst.CSTNode]:
        """The nodes of these exact types, in walk order: one pass over `nodes` per set of types, so rules
        index the module instead of walking it."""
        index = self.__dict__.setdefault("_by_type", {})
        got = index.get(types)
        if got is None:
            got = index[types] = [n for n in self.nodes if type(n) in types]
        return got

    # -- positions -------------------------------------------------------------------------------------
    def line(self, node: cst.CSTNode) -> int:
        return self.positions.line(node)

    def span(self, node: cst.CSTNode) -> tuple[int, int, int, int]:
        """Start line, start column, end line, end column; columns 1-based."""
        sl, sc, el, ec = self.positions.range(node)
        return sl, sc + 1, el, ec + 1

    def end_line(self, node: cst.CSTNode) -> int:
        return self.positions.range(node)[2]

    def source_line(self, line: int) -> str:
        lines = self.__dict__.get("_lines")
        if lines is None:
            lines = self.__dict__["_lines"] = split_lines(self.text)
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def node_text(self, node: cst.CSTNode) -> str:
        """Source text of a node, sliced from the file by position (libcst's codegen is far slower)."""
        sl, sc, el, ec = self.positions.range(node)
        self.source_line(1)
        lines = self.__dict__["_lines"][sl - 1: el]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][sc: ec]
        return "\n".join([lines[0][sc:], *lines[1:-1], lines[-1][: ec]])

    # -- name resolution -------------------------------------------------------------------------------
    def resolve_call(self, call: cst.Call, scope: Func) -> Func | None:
        """The script function a call runs, if any (cached: the functions are fixed once indexed)."""
        cache = self.__dict__.setdefault("_resolved", {})
        key = (id(call), scope.qname)
        if key not in cache:
            cache[key] = self.resolve_callee(call.func, scope)
        return cache[key]

    def resolve_callee(self, func: cst.BaseExpression, scope: Func) -> Func | None:
        if type(func) is cst.Call and dotted(func.func) == "getattr" and len(func.args) >= 2:
            name = func.args[1].value
            if type(name) is cst.SimpleString and isinstance(name.evaluated_value, str):
                return self._method(name.evaluated_value, scope, self_call=False)
            return None
        if type(func) is cst.Name:
            return self._by_name(func.value, scope)
        if type(func) is cst.Attribute:
            recv = func.value
            meth = func.attr.value
            if meth in _API_METHODS:
                return None
            self_call = type(recv) is cst.Name and recv.value in ("self", "cls")
            return self._method(meth, scope, self_call)
        return None

    def _by_name(self, name: str, scope: Func | None) -> Func | None:
        q = scope.qname if scope else None
        while q:
            cand = self.funcs.get(f"{q}.<locals>.{name}")
            if cand:
                return cand
            q = self.funcs[q].parent if q in self.funcs else None
        if name in self.funcs:
            return self.funcs[name]
        if name in self.classes:
            return self.funcs.get(f"{name}.__init__")
        return None

    def _method(self, meth: str, scope: Func, self_call: bool) -> Func | None:
        if self_call and scope.cls and f"{scope.cls}.{meth}" in self.funcs:
            return self.funcs[f"{scope.cls}.{meth}"]
        found = self._methods_named().get(meth, ())
        if len(found) == 1:
            return self.funcs[found[0]]
        if not found and meth in self.funcs:  # module function through a module alias, e.g. utils.helper()
            return self.funcs[meth]
        return None

    def _methods_named(self) -> dict[str, list[str]]:
        """Method name -> qnames of the classes' methods of that name (a redefinition's `@n` key never matches)."""
        index = self.__dict__.get("_method_index")
        if index is None:
            index = self.__dict__["_method_index"] = {}
            for cls, methods in self.classes.items():
                for q in methods:
                    index.setdefault(q[len(cls) + 1:], []).append(q)
        return index

    def _enclosing_taint(self, name: str, scope: Func | None) -> set[str]:
        """A free variable: look it up in the enclosing functions (closures), then the module."""
        if name not in self.tainted_names:
            return _NO_TAINT  # most free names (torch, F, math, ...) are bound by no taint map at all
        q = scope.parent if scope else None
        while q:
            k = self.taint.get(q, {}).get(name)
            if k is not None:
                return k
            q = self.funcs[q].parent if q in self.funcs else None
        return self.global_taint.get(name, set())

    # -- taint -----------------------------------------------------------------------------------------
    def expr_taint(self, node: cst.CSTNode, scope: Func | None, local: dict[str, set[str]] | None = None) -> set[str]:
        """Taint kinds an expression carries; a call to a script function adds what that function returns on
        its own (its arguments are part of the expression already), so taint stays per call site."""
        if local is None:
            local = self.taint.get(scope.qname, {}) if scope else {}
        static, names, attrs, calls, own = taint_leaves(node)
        kinds = set(static)
        if own and not self.blind_self:
            cls = scope.cls if scope else None
            for x in own:
                # bound through self in this class: that binding; otherwise (class-body or base-class attributes)
                # any binding of the name
                key = f"{cls}.{x}"
                k = self.attr_taint.get(key, _NO_TAINT) if key in self.self_bound else self.attr_taint.get(x)
                if k:
                    kinds |= k
        for x in names:
            k = local.get(x)
            if k is None:
                k = self._enclosing_taint(x, scope)
            if k:
                kinds |= k
        if attrs:
            attr_taint = self.attr_taint
            for x in attrs:
                k = attr_taint.get(x)
                if k:
                    kinds |= k
        for call in calls:
            callee = self.resolve_call(call, scope) if scope else None
            if callee is None or callee.name == "__init__":
                # library calls, and constructors (the object keeps what it is given): the result may carry any
                # argument's data
                for arg in call.args:
                    kinds |= self.expr_taint(arg.value, scope, local)
                continue
            on_object = callee.cls is not None and type(call.func) is cst.Attribute and not (
                type(call.func.value) is cst.Name and call.func.value.value in ("self", "cls"))
            # `train_loader.next_batch()`: what the method returns of its own, plus what the object holds (its
            # receiver's taint, already in the expression), not what other objects of the class were built from
            k = (self.return_own if on_object else self.return_taint).get(callee.qname, self.return_taint.get(callee.qname))
            if k:
                kinds |= k
            passes = self.passthrough(callee)
            if passes:
                for pname, arg in call_arguments(call, callee):
                    if pname is None or pname in passes:
                        kinds |= self.expr_taint(arg.value, scope, local)
        return kinds

    def passthrough(self, func: Func) -> frozenset[str]:
        """The parameters of a script function whose value can reach what it returns (a function summary):
        `train_model(h, device, val_data)` returns a model built from `h`, not from `val_data`, which only
        feeds its periodic validation logging. Approximate upward: nested calls pass every argument on."""
        cache = self.__dict__.setdefault("_passthrough", {})
        got = cache.get(func.qname)
        if got is None:
            binds, rets, _calls = self._binds[func.qname]
            seeds: set[str] = set()
            for r in rets:
                seeds |= names_in(r)
            edges = []
            for value, bound, aug in binds:
                sources = names_in(value) | (names_in(aug) if aug is not None else frozenset())
                edges.append(({b.lstrip(".") for b in bound}, sources))
            reach = backward_closure(seeds, edges) if seeds else set()
            got = cache[func.qname] = frozenset(p for p in func.params if p in reach)
        return got


# -- building the model ----------------------------------------------------------------------------------

def _index(prog: Program) -> None:
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
            _index_block(prog, _block(stmt), cls_q, q, False)
        elif t is cst.ClassDef:
            name = stmt.name.value
            prog.classes.setdefault(name, [])
            prog.class_bases[name] = [dotted(a.value) for a in stmt.bases]
            _index_block(prog, _block(stmt), name, fn_q, True)
        elif t is cst.SimpleStatementLine:
            for sm in stmt.body:
                _index_small(prog, sm, fn_q)
        elif t is cst.SimpleStatementSuite:
            for sm in stmt.body:
                _index_small(prog, sm, fn_q)
        else:
            for child in _child_blocks(stmt) + ([_block(stmt)] if t in (cst.If, cst.Else) else []):
                _index_block(prog, child, cls_q, fn_q, False)
            if t is cst.If and stmt.orelse is not None:
                _index_block(prog, [stmt.orelse] if type(stmt.orelse) is cst.If else _block(stmt.orelse), cls_q, fn_q,
                             False)


def build_program(module: cst.Module, text: str, env: dict[str, set[str]], positions: Positions,
                  nodes: list[cst.CSTNode]) -> Program:
    reset_children_cache(module)
    prog = Program(module=module, text=text, positions=positions, nodes=nodes)
    prog.funcs["<module>"] = Func("<module>", "<module>", module, [], None, None)
    _index(prog)
    prog.config = _collect_config(prog, env)
    _compute_taint(prog)
    return prog


def func_statements(func: Func) -> list[cst.CSTNode]:
    """Every node of a function's own body (not of nested defs), computed once per function."""
    nodes = func.__dict__.get("_nodes")
    if nodes is None:
        nodes = [n for stmt in func.body if type(stmt) not in (cst.FunctionDef, cst.ClassDef) for n in walk(stmt)]
        func.__dict__["_nodes"] = nodes
    return nodes


def func_nodes_of(func: Func, *types: type) -> list[cst.CSTNode]:
    """The nodes of these exact types in a function's own body, in walk order (cached per function)."""
    index = func.__dict__.setdefault("_by_type", {})
    got = index.get(types)
    if got is None:
        got = index[types] = [n for n in func_statements(func) if type(n) in types]
    return got


_CHANGING_METHODS = MUTATOR_METHODS | {"add", "update", "pop", "popitem", "clear", "remove", "discard", "put",
                                       "sort", "reverse", "fill_", "zero_", "__setitem__"}
_BINDERS = frozenset({cst.Assign, cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor, cst.WithItem, cst.NamedExpr})


def _binding_targets(node: cst.CSTNode) -> list[cst.CSTNode]:
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


def _flat_targets(t: cst.CSTNode) -> list[cst.CSTNode]:
    if type(t) in (cst.Tuple, cst.List):
        return [x for e in t.elements for x in _flat_targets(e.value)]
    if type(t) is cst.StarredElement:
        return _flat_targets(t.value)
    return [t]


def _bound_name(t: cst.CSTNode) -> str | None:
    if type(t) is cst.Name:
        return t.value
    if type(t) is cst.Attribute and type(t.value) is cst.Name and t.value.value in ("self", "cls"):
        return t.attr.value
    return None


def _collect_config(prog: Program, env: dict[str, set[str]]) -> ConfigScope:
    """Bind every name that is assigned exactly one decidable value anywhere (two passes for chains)."""
    sites: dict[str, list[cst.CSTNode | None]] = {}
    for func in prog.funcs.values():
        if type(func.node) is cst.FunctionDef:
            for p in func.params:
                sites.setdefault(p, []).append(None)
        for n in walk(func.node):
            if type(n) is cst.ClassDef and func.qname == "<module>":
                # a class body (Hyperparameters) runs top to bottom: its last assignment of a name wins
                last: dict[str, cst.CSTNode | None] = {}
                for m in walk(n, into_defs=False):
                    for t in _binding_targets(m):
                        for leaf in _flat_targets(t):
                            name = _bound_name(leaf)
                            if name:
                                ok = len(_flat_targets(t)) == 1 and type(m) in (cst.Assign, cst.AnnAssign)
                                last[name] = m if ok else None
                for name, m in last.items():
                    sites.setdefault(name, []).append(m)
            if type(n) is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in _CHANGING_METHODS:
                name = _bound_name(n.func.value)  # `xs.append(v)`: xs is no constant, whatever it was bound to
                if name:
                    sites.setdefault(name, []).append(None)
                continue
            if type(n) not in _BINDERS:
                continue
            for t in _binding_targets(n):
                if type(t) in (cst.Subscript, cst.Attribute) and _bound_name(t) is None:
                    name = root_name(t)  # `xs[i] = v`, `cfg.x = v`: the container changes
                    if name:
                        sites.setdefault(name, []).append(None)
                leaves = _flat_targets(t)
                for leaf in leaves:
                    name = _bound_name(leaf)
                    if name:
                        ok = len(leaves) == 1 and type(n) in (cst.Assign, cst.AnnAssign) and n.value is not None
                        sites.setdefault(name, []).append(n if ok else None)
    scope = ConfigScope(env=env)
    for _ in range(3):
        fresh = ConfigScope(env=env, used_keys=scope.used_keys)
        for name, nodes in sites.items():
            if any(n is None for n in nodes):
                continue
            seen = {id(n): n for n in nodes}
            vals = [evaluate(n.value, scope) for n in seen.values()]
            for v in vals:
                fresh.bind(name, v)
        scope = fresh
    return scope


def _bindings(func: Func) -> tuple[list, list, list]:
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
        for target in _binding_targets(n):
            for sub_value, names in _pairs(target, value):
                binds.append((sub_value, names, aug))
    if type(func.node) is cst.Lambda:
        rets.append(func.node.body)
    return binds, rets, calls


def _leaf_name(leaf: cst.CSTNode) -> str | None:
    """A bound name; `self.x` binds the attribute `.x`, shared by every method of the class."""
    if type(leaf) is cst.Attribute and type(leaf.value) is cst.Name and leaf.value.value in ("self", "cls"):
        return "." + leaf.attr.value
    return _bound_name(leaf) or (root_name(leaf) if type(leaf) is cst.Subscript else None)


def _pairs(target: cst.CSTNode, value: cst.CSTNode) -> list[tuple[cst.CSTNode, list[str]]]:
    """`a, b = e1, e2` binds element-wise, so `x, y = chunk[:-1], chunk[1:]` does not make x a target."""
    if type(target) in (cst.Tuple, cst.List) and type(value) is cst.Call and \
            dotted(value.func) in ("zip", "enumerate") and not any(a.star or a.keyword for a in value.args):
        # `for i, (prev, tgt) in enumerate(zip(x, y))`: element-wise, the index carries nothing
        elems = [e.value for e in target.elements]
        if dotted(value.func) == "enumerate" and len(elems) == 2 and len(value.args) == 1:
            return _pairs(elems[1], value.args[0].value)
        if dotted(value.func) == "zip" and len(elems) == len(value.args):
            return [p for te, a in zip(elems, value.args) for p in _pairs(te, a.value)]
    if type(target) in (cst.Tuple, cst.List) and type(value) in (cst.Tuple, cst.List) and \
            len(target.elements) == len(value.elements) and \
            not any(type(e) is cst.StarredElement for e in (*target.elements, *value.elements)):
        out = []
        for te, ve in zip(target.elements, value.elements):
            out.extend(_pairs(te.value, ve.value))
        return out
    names = [x for x in (_leaf_name(leaf) for leaf in _flat_targets(target)) if x]
    return [(value, names)] if names else []


def _class_bindings(prog: Program) -> list:
    """Class-body assignments (`train_files = os.path.join(...)` in Hyperparameters) bind attributes."""
    binds = []
    for stmt in prog.module.body:
        if type(stmt) is cst.ClassDef:
            for n in walk(stmt):
                if type(n) in (cst.Assign, cst.AnnAssign) and n.value is not None:
                    for target in _binding_targets(n):
                        for leaf in _flat_targets(target):
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


def local_taint(prog: Program, func: Func, seed: dict[str, set[str]]) -> dict[str, set[str]]:
    """A function's local taint when its parameters carry `seed` (one call context), cached per seed."""
    key = (func.qname, tuple(sorted((k, tuple(sorted(v))) for k, v in seed.items())))
    cache = prog.__dict__.setdefault("_ctx_taint", {})
    if key not in cache:
        local = {k: set(v) for k, v in seed.items()}
        _fixpoint(prog, func, local)
        cache[key] = local
    return cache[key]


def _fixpoint(prog: Program, func: Func, local: dict[str, set[str]]) -> bool:
    grew = False
    binds = prog._binds[func.qname][0]
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


def _compute_taint(prog: Program) -> None:
    funcs = list(prog.funcs.values())
    prog.taint = {f.qname: {} for f in funcs}
    prog.param_taint = {f.qname: {} for f in funcs}
    prog._binds = {f.qname: _bindings(f) for f in funcs}
    prog._binds["<module>"][0].extend(_class_bindings(prog))
    prog.self_bound = {f"{f.cls}.{n[1:]}" for f in funcs if f.cls for _v, names, _a in prog._binds[f.qname][0]
                       for n in names if n.startswith(".")}
    callees = {f.qname: [(c, prog.resolve_call(c, f)) for c in prog._binds[f.qname][2]] for f in funcs}
    for _ in range(8):
        changed = False
        for func in funcs:
            rets = prog._binds[func.qname][1]
            intrinsic: dict[str, set[str]] = {}
            _fixpoint(prog, func, intrinsic)
            ret: set[str] = set()
            for r in rets:
                ret |= prog.expr_taint(r, func, intrinsic)
            if not ret <= prog.return_taint.get(func.qname, set()):
                prog.return_taint[func.qname] = prog.return_taint.get(func.qname, set()) | ret
                changed = True
            local = prog.taint[func.qname]
            for p, kinds in prog.param_taint[func.qname].items():
                if not kinds <= local.get(p, set()):
                    local[p] = local.get(p, set()) | kinds
                    prog.tainted_names.add(p)
                    changed = True
            changed |= _fixpoint(prog, func, local)
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
            _fixpoint(prog, func, own)
            ret: set[str] = set()
            for r in prog._binds[func.qname][1]:
                ret |= prog.expr_taint(r, func, own)
            prog.return_own[func.qname] = ret
    finally:
        prog.blind_self = False


# -- configuration-dependent reachability ---------------------------------------------------------------

def branch_value(prog: Program, test: cst.BaseExpression) -> Value:
    return evaluate(test, prog.config)


def default_keys(prog: Program, v: Value) -> tuple[str, ...]:
    """The keys of a decided condition that were read from a default, not stated by the run."""
    return tuple(k for k in dict.fromkeys(v.keys) if k not in prog.config.env)


def describe_keys(prog: Program, v: Value) -> str:
    if not v.keys:
        return "a constant condition"
    parts = [f"{k}={prog.config.used_keys.get(k, '?')}" for k in dict.fromkeys(v.keys)]
    return ", ".join(parts)


def _exits(block: Sequence[cst.CSTNode]) -> bool:
    if not block:
        return False
    last = block[-1]
    if type(last) is cst.SimpleStatementLine:
        return any(type(s) in (cst.Return, cst.Raise, cst.Continue, cst.Break) for s in last.body)
    return False


def _block(node: cst.CSTNode | None) -> Sequence[cst.CSTNode]:
    if node is None:
        return []
    body = getattr(node, "body", None)
    if type(body) is cst.IndentedBlock:
        return body.body
    if type(body) is cst.SimpleStatementSuite:
        return [body]
    return []


class _Reachability:
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
            elif type(n) is cst.Attribute and n.attr.value not in _API_METHODS:
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
                    self.regions.append(_region_of(prog, stmt.body,
                                                   f"loop condition is false under {describe_keys(prog, v)}"))
                    continue
            if type(stmt) is cst.For:
                n_iter = _range_len(prog, stmt.iter)
                if n_iter == 0:
                    why = describe_keys(prog, branch_value(prog, stmt.iter.args[-1].value))
                    self.regions.append(_region_of(prog, stmt.body, f"loop runs zero times under {why}"))
                    self.mark_reachable_in(stmt.iter, scope)
                    continue
            headers = _header_exprs(stmt)
            for h in headers:
                self.mark_reachable_in(h, scope)
            for child in _child_blocks(stmt):
                self.visit_block(child, scope)

    def visit_if(self, stmt: cst.If, scope: Func) -> bool:
        """Visit an if/elif chain; True when the taken arm always exits (rest of the block is dead)."""
        prog = self.prog
        self.mark_reachable_in(stmt.test, scope)
        v = branch_value(prog, stmt.test)
        body = _block(stmt)
        orelse = stmt.orelse
        if v.value is UNKNOWN:
            self.visit_block(body, scope)
            if type(orelse) is cst.If:
                self.visit_if(orelse, scope)
            elif orelse is not None:
                self.visit_block(_block(orelse), scope)
            return False
        why = describe_keys(prog, v)
        if v.value:
            self.visit_block(body, scope)
            if orelse is not None:
                self.regions.append(_region_of(prog, orelse,
                                               f"else-branch not taken: condition is true under {why}"))
            return _exits(body)
        region = _region_of(prog, stmt.body, f"condition `{_code(prog, stmt.test)}` is false under {why}")
        region.default_keys = default_keys(prog, v)
        self.regions.append(region)
        if region.default_keys:
            self.note_blocked(stmt.body, scope, region.default_keys)
        if type(orelse) is cst.If:
            return self.visit_if(orelse, scope)
        if orelse is not None:
            self.visit_block(_block(orelse), scope)
            return _exits(_block(orelse))
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
    walker = _Reachability(prog)
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
                if q not in reachable and (name.startswith("__") or name in _FRAMEWORK_METHODS or name not in mentioned):
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
_FRAMEWORK_METHODS = {"forward", "step", "backward", "extra_repr", "reset_parameters", "_init_weights", "setup_context"}


def _code(prog: Program, node: cst.CSTNode) -> str:
    text = prog.node_text(node).strip()
    return text if len(text) <= 80 else text[:77] + "..."


def _region_of(prog: Program, node: cst.CSTNode, reason: str) -> Region:
    start, _, end, _ = prog.positions.range(node)
    return Region(start, end, reason)


def _range_len(prog: Program, it: cst.BaseExpression) -> int | None:
    if type(it) is cst.Call and dotted(it.func) == "range" and 1 <= len(it.args) <= 2:
        vals = [branch_value(prog, a.value).value for a in it.args]
        if all(isinstance(v, int) for v in vals):
            lo, hi = (0, vals[0]) if len(vals) == 1 else (vals[0], vals[1])
            return max(0, hi - lo)
    return None


def _header_exprs(stmt: cst.CSTNode) -> list[cst.CSTNode]:
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


def _child_blocks(stmt: cst.CSTNode) -> list[Sequence[cst.CSTNode]]:
    if type(stmt) in (cst.For, cst.While):
        return [_block(stmt), _block(stmt.orelse)]
    if type(stmt) is cst.With:
        return [_block(stmt)]
    if type(stmt) is cst.Try:
        return [_block(stmt)] + [_block(h) for h in stmt.handlers] + [_block(stmt.orelse), _block(stmt.finalbody)]
    if type(stmt) is cst.Match:
        return [_block(c) for c in stmt.cases]
    return []
