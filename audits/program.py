"""The program model over the CST: its functions, call resolution, the configuration, and what expressions carry.

libcst has no control- or data-flow graph; this package builds the little we need, one module a job:
`syntax` (shapes of statements and bindings), `functions` (the function index, bindings, argument binding),
`configuration` (values the run is configured with), `taint` (what names carry), `reachability` (what cannot run),
and this module, which holds them together. It is deliberately
approximate in one direction only: anything it cannot decide is treated as reachable and possibly tainted,
and rules that need certainty (FAIL) ask for line evidence on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import libcst as cst

from audits.configuration import collect_config
from audits.consteval import ConfigScope
from audits.functions import Func, call_arguments, index_program
from audits.positions import Positions, split_lines
from audits.syntax import API_METHODS, backward_closure, dotted, names_in
from audits.taint import compute_taint, taint_leaves
from audits.walk import reset_children_cache

_NO_TAINT: frozenset[str] = frozenset()


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
    return_elements: dict[str, list[set[str]]] = field(default_factory=dict)  # per slot of a fixed tuple return
    attr_taint: dict[str, set[str]] = field(default_factory=dict)  # "Class.attr" for self-bindings, and "attr"
    blind_self: bool = False  # while computing `return_own`
    self_bound: set[str] = field(default_factory=set)  # "Class.attr" for every `self.attr = ...` in a method
    global_taint: dict[str, set[str]] = field(default_factory=dict)
    tainted_names: set[str] = field(default_factory=set)  # every name a taint map ever bound (a superset)
    imports: dict[str, str] = field(default_factory=dict)  # local alias -> imported dotted name
    # Facts the engine supplies from outside the tree: modules an absolute import would load from the file's own
    # folder (file names only; never read or run), and the exec calls whose packed payload was (or was not) decoded.
    local_modules: dict[str, str] = field(default_factory=dict)
    linked_modules: frozenset[str] = frozenset()  # those of them appended to this program (audits/linking.py)
    resolved_execs: set[int] = field(default_factory=set)
    unpack_failures: list[tuple[cst.Call, str]] = field(default_factory=list)

    # Memos of facts that are fixed once the program is built (the tree does not change during an audit).
    @cached_property
    def _by_type(self) -> dict[tuple[type, ...], list[cst.CSTNode]]:
        return {}

    @cached_property
    def _lines(self) -> list[str]:
        return split_lines(self.text)

    @cached_property
    def _resolved(self) -> dict[tuple[int, str], Func | None]:
        return {}

    @cached_property
    def _passthrough(self) -> dict[tuple[str, int | None], frozenset[str]]:
        return {}

    @cached_property
    def _tuple_returns(self) -> dict[str, list[list[cst.CSTNode]] | None]:
        return {}

    @cached_property
    def binds(self) -> dict[str, tuple[list, list, list]]:
        """Per function: (value, bound names, augmented target) bindings, returned values, calls (taint fills it)."""
        return {}

    @cached_property
    def memo(self) -> dict[str, dict]:
        """Per-program caches of the layers above (flow facts, call contexts, scoring sources), by name."""
        return {}

    def identifiers(self) -> frozenset[str]:
        """Every name and attribute name the module mentions: what `names_in` of any node is a subset of."""
        return self._identifiers

    @cached_property
    def _identifiers(self) -> frozenset[str]:
        return frozenset([n.value for n in self.nodes_of(cst.Name)] + [n.attr.value for n in self.nodes_of(cst.Attribute)])

    def nodes_of(self, *types: type) -> list[cst.CSTNode]:
        """The nodes of these exact types, in walk order: one pass over `nodes` per set of types, so rules
        index the module instead of walking it."""
        index = self._by_type
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
        lines = self._lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def node_text(self, node: cst.CSTNode) -> str:
        """Source text of a node, sliced from the file by position (libcst's codegen is far slower)."""
        sl, sc, el, ec = self.positions.range(node)
        lines = self._lines[sl - 1: el]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][sc: ec]
        return "\n".join([lines[0][sc:], *lines[1:-1], lines[-1][: ec]])

    # -- name resolution -------------------------------------------------------------------------------
    def resolve_call(self, call: cst.Call, scope: Func) -> Func | None:
        """The script function a call runs, if any (cached: the functions are fixed once indexed)."""
        cache = self._resolved
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
            if meth in API_METHODS:
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
        found = self._method_index.get(meth, ())
        if len(found) == 1:
            return self.funcs[found[0]]
        if not found and meth in self.funcs:  # module function through a module alias, e.g. utils.helper()
            return self.funcs[meth]
        return None

    @cached_property
    def _method_index(self) -> dict[str, list[str]]:
        """Method name -> qnames of the classes' methods of that name (a redefinition's `@n` key never matches)."""
        index: dict[str, list[str]] = {}
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
        for call, index in calls:
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
            slots = self.return_elements.get(callee.qname) if index is not None and not on_object else None
            if slots is not None and 0 <= index < len(slots):
                k = slots[index]  # `f(...)[i]`, `a, b = f(...)`: that slot of its tuple, not the whole return
            else:
                index = None
                k = (self.return_own if on_object else self.return_taint).get(callee.qname, self.return_taint.get(callee.qname))
            if k:
                kinds |= k
            passes = self.passthrough(callee, index)
            if passes:
                for pname, arg in call_arguments(call, callee):
                    if pname is None or pname in passes:
                        kinds |= self.expr_taint(arg.value, scope, local)
        return kinds

    def tuple_returns(self, func: Func) -> list[list[cst.CSTNode]] | None:
        """Per slot, the expressions a function returns there when every return is a tuple of one size
        (`return args, luts, val_tokens`); None for anything else (a generator, a bare return, mixed shapes)."""
        cache = self._tuple_returns
        if func.qname in cache:
            return cache[func.qname]
        rets = self.binds[func.qname][1]
        got = None
        shapes = {len(r.elements) if type(r) is cst.Tuple and
                  not any(type(e) is cst.StarredElement for e in r.elements) else -1 for r in rets}
        if len(shapes) == 1 and min(shapes) > 0 and not any(type(n) is cst.Yield for n in func.statements):
            got = [[r.elements[i].value for r in rets] for i in range(len(rets[0].elements))]
        cache[func.qname] = got
        return got

    def passthrough(self, func: Func, index: int | None = None) -> frozenset[str]:
        """The parameters of a script function whose value can reach what it returns (a function summary):
        `train_model(h, device, val_data)` returns a model built from `h`, not from `val_data`, which only
        feeds its periodic validation logging; with `index`, what reaches that slot of its tuple return.
        Approximate upward: nested calls pass every argument on."""
        cache = self._passthrough
        got = cache.get((func.qname, index))
        if got is None:
            binds, rets, _calls = self.binds[func.qname]
            if index is not None:
                rets = self.tuple_returns(func)[index]
            seeds: set[str] = set()
            for r in rets:
                seeds |= names_in(r)
            edges = []
            for value, bound, aug in binds:
                sources = names_in(value) | (names_in(aug) if aug is not None else frozenset())
                edges.append(({b.lstrip(".") for b in bound}, sources))
            reach = backward_closure(seeds, edges) if seeds else set()
            got = cache[(func.qname, index)] = frozenset(p for p in func.params if p in reach)
        return got


def build_program(module: cst.Module, text: str, env: dict[str, set[str]], positions: Positions,
                  nodes: list[cst.CSTNode]) -> Program:
    reset_children_cache(module)
    prog = Program(module=module, text=text, positions=positions, nodes=nodes)
    prog.funcs["<module>"] = Func("<module>", "<module>", module, [], None, None)
    index_program(prog)
    prog.config = collect_config(prog, env)
    compute_taint(prog)
    return prog
