"""The run configuration: every name bound to one decidable value (env reads with their defaults or the
stated values, Hyperparameters attributes), and what a condition or a `range(...)` evaluates to under it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from audits.consteval import ConfigScope, Value, evaluate
from audits.syntax import MUTATOR_METHODS, binding_targets, bound_name, dotted, flat_targets, root_name
from audits.walk import walk

if TYPE_CHECKING:
    from audits.program import Program

CHANGING_METHODS = MUTATOR_METHODS | {"add", "update", "pop", "popitem", "clear", "remove", "discard", "put",
                                       "sort", "reverse", "fill_", "zero_", "__setitem__"}

BINDERS = frozenset({cst.Assign, cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor, cst.WithItem, cst.NamedExpr})


def collect_config(prog: Program, env: dict[str, set[str]]) -> ConfigScope:
    """Bind every name that is assigned exactly one decidable value anywhere (two passes for chains)."""
    sites = _binding_sites(prog)
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


def _binding_sites(prog: Program) -> dict[str, list[cst.CSTNode | None]]:
    """Every binding of every name: the assignment when it binds one decidable value, None when it cannot (a
    parameter, a tuple target, a mutation such as `xs.append(v)` or `cfg.x = v`)."""
    sites: dict[str, list[cst.CSTNode | None]] = {}
    for func in prog.funcs.values():
        if type(func.node) is cst.FunctionDef:
            for p in func.params:
                sites.setdefault(p, []).append(None)
        for n in walk(func.node):
            if type(n) is cst.ClassDef and func.qname == "<module>":
                for name, m in _class_body_bindings(n).items():
                    sites.setdefault(name, []).append(m)
            if type(n) is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in CHANGING_METHODS:
                name = bound_name(n.func.value)  # `xs.append(v)`: xs is no constant, whatever it was bound to
                if name:
                    sites.setdefault(name, []).append(None)
            elif type(n) in BINDERS:
                for name, m in _bindings(n):
                    sites.setdefault(name, []).append(m)
    return sites


def _class_body_bindings(cls: cst.ClassDef) -> dict[str, cst.CSTNode | None]:
    """A class body (Hyperparameters) runs top to bottom: its last assignment of a name wins."""
    last: dict[str, cst.CSTNode | None] = {}
    for m in walk(cls, into_defs=False):
        for t in binding_targets(m):
            for leaf in flat_targets(t):
                name = bound_name(leaf)
                if name:
                    ok = len(flat_targets(t)) == 1 and type(m) in (cst.Assign, cst.AnnAssign)
                    last[name] = m if ok else None
    return last


def _bindings(n: cst.CSTNode) -> list[tuple[str, cst.CSTNode | None]]:
    out: list[tuple[str, cst.CSTNode | None]] = []
    for t in binding_targets(n):
        if type(t) in (cst.Subscript, cst.Attribute) and bound_name(t) is None:
            name = root_name(t)  # `xs[i] = v`, `cfg.x = v`: the container changes
            if name:
                out.append((name, None))
        leaves = flat_targets(t)
        for leaf in leaves:
            name = bound_name(leaf)
            if name:
                ok = len(leaves) == 1 and type(n) in (cst.Assign, cst.AnnAssign) and n.value is not None
                out.append((name, n if ok else None))
    return out


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


def range_len(prog: Program, it: cst.BaseExpression) -> int | None:
    if type(it) is cst.Call and dotted(it.func) == "range" and 1 <= len(it.args) <= 2:
        vals = [branch_value(prog, a.value).value for a in it.args]
        if all(isinstance(v, int) for v in vals):
            lo, hi = (0, vals[0]) if len(vals) == 1 else (vals[0], vals[1])
            return max(0, hi - lo)
    return None
