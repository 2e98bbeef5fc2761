"""A tiny evaluator for configuration expressions: env-var reads with defaults, casts, comparisons.

It answers one question — can this branch run under the stated configuration? — and says "unknown" for
anything it cannot decide, so unknown code is always treated as reachable.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from audits.walk import module_cache


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass
class Value:
    """A resolved value plus the env keys it was read from (for the 'why inactive' message)."""

    value: Any
    keys: tuple[str, ...] = ()


@dataclass
class ConfigScope:
    """Names and attributes bound to configuration values, e.g. `ttt_enabled` from `class Hyperparameters`."""

    env: dict[str, set[str]]
    bindings: dict[str, Value] = field(default_factory=dict)
    conflicted: set[str] = field(default_factory=set)
    used_keys: dict[str, str] = field(default_factory=dict)  # key -> value used (default or stated)

    def bind(self, name: str, v: Value) -> None:
        if name in self.conflicted:
            return
        old = self.bindings.get(name)
        if old is not None and (old.value is UNKNOWN or v.value is UNKNOWN or old.value != v.value):
            self.conflicted.add(name)
            del self.bindings[name]
            return
        self.bindings[name] = v

    def lookup(self, name: str) -> Value:
        return self.bindings.get(name, Value(UNKNOWN))


_CMP = {
    cst.Equal: operator.eq, cst.NotEqual: operator.ne, cst.LessThan: operator.lt,
    cst.LessThanEqual: operator.le, cst.GreaterThan: operator.gt, cst.GreaterThanEqual: operator.ge,
    cst.In: lambda a, b: a in b, cst.NotIn: lambda a, b: a not in b,
    cst.Is: operator.is_, cst.IsNot: operator.is_not,
}
_BIN = {
    cst.Add: operator.add, cst.Subtract: operator.sub, cst.Multiply: operator.mul,
    cst.Divide: operator.truediv, cst.FloorDivide: operator.floordiv, cst.Modulo: operator.mod,
}


def _dotted(node: cst.BaseExpression) -> str:
    if type(node) is cst.Name:
        return node.value
    if type(node) is cst.Attribute:
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base else ""
    return ""


def _env_read(call: cst.Call, scope: ConfigScope) -> Value | None:
    """`os.environ.get(K, d)`, `os.getenv(K, d)`; the stated env wins over the default."""
    fn = _dotted(call.func)
    if fn not in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
        return None
    if not call.args:
        return Value(UNKNOWN)
    key_v = evaluate(call.args[0].value, scope)
    if not isinstance(key_v.value, str):
        return Value(UNKNOWN)
    key = key_v.value
    stated = scope.env.get(key)
    if stated:
        if len(stated) > 1:
            scope.used_keys[key] = "|".join(sorted(stated))
            return Value(UNKNOWN, (key,))
        value = next(iter(stated))
        scope.used_keys[key] = value
        return Value(value, (key,))
    if len(call.args) < 2:
        scope.used_keys.setdefault(key, "<unset>")
        return Value(None, (key,))
    default = evaluate(call.args[1].value, scope)
    if default.value is not UNKNOWN:
        scope.used_keys.setdefault(key, f"{default.value} (default)")
    return Value(default.value, (key,) + default.keys)


def _cast(fn: str, v: Any) -> Any:
    if v is UNKNOWN:
        return UNKNOWN
    try:
        if fn == "int":
            return int(float(v)) if isinstance(v, str) and "." in v else int(v)
        if fn == "float":
            return float(v)
        if fn == "bool":
            return bool(v)
        if fn == "str":
            return str(v)
    except (TypeError, ValueError):
        return UNKNOWN
    return UNKNOWN


_LITERALS = module_cache()
_UNSEEN = object()


def _literal(node: cst.SimpleString | cst.Integer | cst.Float) -> Any:
    """A literal's value, once per node: libcst evaluates each string with ast.literal_eval, and the
    configuration is evaluated several times over."""
    got = _LITERALS.get(id(node), _UNSEEN)
    if got is _UNSEEN:
        try:
            got = node.evaluated_value
        except Exception:
            got = UNKNOWN
        _LITERALS[id(node)] = got
    return got


def evaluate(node: cst.BaseExpression, scope: ConfigScope, depth: int = 0) -> Value:
    """The value an expression has under the configuration, with the environment keys it read; UNKNOWN where it
    cannot be decided (one evaluator per node type below)."""
    if depth > 40:
        return Value(UNKNOWN)
    ev = _EVALUATORS.get(type(node))
    return ev(node, scope, depth + 1) if ev is not None else Value(UNKNOWN)


def _literal_value(node, scope: ConfigScope, d: int) -> Value:
    return Value(_literal(node))


def _concatenated(node: cst.ConcatenatedString, scope: ConfigScope, d: int) -> Value:
    v = node.evaluated_value
    return Value(v if isinstance(v, (str, bytes)) else UNKNOWN)


def _name(node: cst.Name, scope: ConfigScope, d: int) -> Value:
    if node.value in ("True", "False", "None"):
        return Value({"True": True, "False": False, "None": None}[node.value])
    if node.value == "__name__":
        return Value("__main__")
    return scope.lookup(node.value)


def _attribute(node: cst.Attribute, scope: ConfigScope, d: int) -> Value:
    if type(node.value) is cst.Subscript:  # os.environ["K"] is a subscript of its own
        return Value(UNKNOWN)
    return scope.lookup(node.attr.value)


def _subscript(node: cst.Subscript, scope: ConfigScope, d: int) -> Value:
    if _dotted(node.value) in ("os.environ", "environ") and len(node.slice) == 1:
        el = node.slice[0].slice
        if type(el) is cst.Index:
            key = evaluate(el.value, scope, d).value
            if isinstance(key, str):
                stated = scope.env.get(key)
                if stated and len(stated) == 1:
                    return Value(next(iter(stated)), (key,))
    return Value(UNKNOWN)


def _formatted(node: cst.FormattedString, scope: ConfigScope, d: int) -> Value:
    parts, keys = [], ()
    for part in node.parts:
        if type(part) is cst.FormattedStringText:
            parts.append(part.value)
        elif type(part) is cst.FormattedStringExpression and part.format_spec is None and part.conversion is None:
            v = evaluate(part.expression, scope, d)
            keys += v.keys
            if v.value is UNKNOWN:
                return Value(UNKNOWN, keys)
            parts.append(str(v.value))
        else:
            return Value(UNKNOWN, keys)
    return Value("".join(parts), keys)


def _call(node: cst.Call, scope: ConfigScope, d: int) -> Value:
    env = _env_read(node, scope)
    if env is not None:
        return env
    fn = _dotted(node.func)
    if fn in ("os.path.join", "path.join", "posixpath.join") and node.args:
        return _path_join(node, scope, d)
    if fn in ("int", "float", "bool", "str") and len(node.args) == 1:
        inner = evaluate(node.args[0].value, scope, d)
        return Value(_cast(fn, inner.value), inner.keys)
    if type(node.func) is cst.Attribute and node.func.attr.value in ("lower", "strip", "upper") and not node.args:
        inner = evaluate(node.func.value, scope, d)
        if isinstance(inner.value, str):
            return Value(getattr(inner.value, node.func.attr.value)(), inner.keys)
        return Value(UNKNOWN, inner.keys)
    return Value(UNKNOWN)


def _path_join(node: cst.Call, scope: ConfigScope, d: int) -> Value:
    import posixpath

    vals = [evaluate(a.value, scope, d) for a in node.args]
    keys = tuple(k for v in vals for k in v.keys)
    if all(isinstance(v.value, str) for v in vals):
        return Value(posixpath.join(*(v.value for v in vals)), keys)
    # the glob pattern is what matters: keep the last component when the folder is unknown
    if isinstance(vals[-1].value, str):
        return Value("<dir>/" + vals[-1].value, keys)
    return Value(UNKNOWN, keys)


def _unary(node: cst.UnaryOperation, scope: ConfigScope, d: int) -> Value:
    inner = evaluate(node.expression, scope, d)
    if inner.value is UNKNOWN:
        return inner
    try:
        if type(node.operator) is cst.Not:
            return Value(not inner.value, inner.keys)
        if type(node.operator) is cst.Minus:
            return Value(-inner.value, inner.keys)
    except TypeError:
        pass
    return Value(UNKNOWN, inner.keys)


def _boolean(node: cst.BooleanOperation, scope: ConfigScope, d: int) -> Value:
    left = evaluate(node.left, scope, d)
    right = evaluate(node.right, scope, d)
    keys = left.keys + right.keys
    decided = left.value is not UNKNOWN
    if type(node.operator) is cst.And:
        if decided and not left.value:
            return Value(left.value, left.keys)
        if right.value is not UNKNOWN and not right.value and not decided:
            return Value(False, right.keys)
        return Value(right.value if decided else UNKNOWN, keys)
    if decided and left.value:
        return Value(left.value, left.keys)
    if right.value is not UNKNOWN and right.value and not decided:
        return Value(True, right.keys)
    return Value(right.value if decided else UNKNOWN, keys)


def _comparison(node: cst.Comparison, scope: ConfigScope, d: int) -> Value:
    left = evaluate(node.left, scope, d)
    keys = left.keys
    result: Any = True
    for target in node.comparisons:
        right = evaluate(target.comparator, scope, d)
        keys += right.keys
        op = _CMP.get(type(target.operator))
        if op is None or left.value is UNKNOWN or right.value is UNKNOWN:
            return Value(UNKNOWN, keys)
        try:
            if not op(left.value, right.value):
                result = False
        except TypeError:
            return Value(UNKNOWN, keys)
        left = right
    return Value(result, keys)


def _binary(node: cst.BinaryOperation, scope: ConfigScope, d: int) -> Value:
    left = evaluate(node.left, scope, d)
    right = evaluate(node.right, scope, d)
    op = _BIN.get(type(node.operator))
    if op is None or left.value is UNKNOWN or right.value is UNKNOWN:
        return Value(UNKNOWN, left.keys + right.keys)
    try:
        return Value(op(left.value, right.value), left.keys + right.keys)
    except Exception:
        return Value(UNKNOWN, left.keys + right.keys)


def _sequence(node, scope: ConfigScope, d: int) -> Value:
    items = [evaluate(e.value, scope, d) for e in node.elements if type(e) is cst.Element]
    if any(i.value is UNKNOWN for i in items):
        return Value(UNKNOWN)
    vals = [i.value for i in items]
    return Value(tuple(vals) if type(node) is not cst.Set else frozenset(vals))


def _if_exp(node: cst.IfExp, scope: ConfigScope, d: int) -> Value:
    test = evaluate(node.test, scope, d)
    if test.value is UNKNOWN:
        return Value(UNKNOWN, test.keys)
    branch = evaluate(node.body if test.value else node.orelse, scope, d)
    return Value(branch.value, test.keys + branch.keys)


_EVALUATORS = {
    cst.SimpleString: _literal_value, cst.Integer: _literal_value, cst.Float: _literal_value,
    cst.ConcatenatedString: _concatenated, cst.Name: _name, cst.Attribute: _attribute, cst.Subscript: _subscript,
    cst.FormattedString: _formatted, cst.Call: _call, cst.UnaryOperation: _unary, cst.BooleanOperation: _boolean,
    cst.Comparison: _comparison, cst.BinaryOperation: _binary, cst.Tuple: _sequence, cst.List: _sequence,
    cst.Set: _sequence, cst.IfExp: _if_exp,
}
