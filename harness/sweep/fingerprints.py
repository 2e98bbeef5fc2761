"""Normalized fingerprints of code: the same function copied into another submission gets the same fingerprint.

A fork usually renames a variable, retunes a number, reflows a line or rewrites a comment; none of that changes
what the code does, so none of it changes the fingerprint. The stdlib `ast` tree of a function (parsed, never
run) is serialized with its docstring dropped, numbers replaced by a placeholder and the names it binds itself
(arguments, assignment targets, loop variables) renamed in order of first appearance; attribute names, called
globals and string constants are kept, since they say what the code does (`opt.step()`, `"TTT_EPOCHS"`).

Two uses: a finding's *violation fingerprint* (the rule and the normalized function the flagged line sits in;
at module level, the normalized statement) groups submissions that share the violating code into one cluster,
and the *function fingerprints* of a file (every function with a few statements) trace which earlier submission
a file's code comes from.
"""
from __future__ import annotations

import ast
import hashlib
from typing import Iterator

MIN_STATEMENTS = 4  # smaller functions (getters, one-line forwards) are shared by chance, not by descent
_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _bound_names(fn: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
    return names


def _tokens(node: ast.AST, bound: set[str], renames: dict[str, str]) -> Iterator[str]:
    """A pre-order serialization of `node` with the normalizations of the module docstring."""
    yield type(node).__name__
    if isinstance(node, (ast.Name, ast.arg)):
        name = node.id if isinstance(node, ast.Name) else node.arg
        if name in bound:
            name = renames.setdefault(name, f"v{len(renames)}")
        yield name
        if isinstance(node, ast.arg) and node.annotation is not None:
            yield from _tokens(node.annotation, bound, renames)
        return
    if isinstance(node, ast.Constant):
        v = node.value
        yield "#" if isinstance(v, (int, float, complex)) and not isinstance(v, bool) else repr(v)
        return
    for name, value in ast.iter_fields(node):
        if name in ("type_comment", "ctx"):
            continue
        if isinstance(value, list):
            items = value
            if name == "body" and items and _is_docstring(items[0]):
                items = items[1:]
            yield f"[{name}"
            for item in items:
                if isinstance(item, ast.AST):
                    yield from _tokens(item, bound, renames)
                else:
                    yield repr(item)
            yield "]"
        elif isinstance(value, ast.AST):
            yield name
            yield from _tokens(value, bound, renames)
        elif name in ("name", "attr", "arg", "module", "op"):
            yield repr(value)


def _is_docstring(stmt: ast.AST) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def node_fingerprint(node: ast.AST) -> str:
    """16 hex digits identifying `node` up to renamed locals, changed numbers, comments and layout."""
    bound = _bound_names(node) if isinstance(node, _FUNC) else set()
    h = hashlib.sha256()
    for tok in _tokens(node, bound, {}):
        h.update(tok.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _statements(fn: ast.AST) -> int:
    return sum(1 for n in ast.walk(fn) if isinstance(n, ast.stmt)) - 1


def function_fingerprints(text: str) -> list[str]:
    """Fingerprints of every function (methods and nested ones included) with at least MIN_STATEMENTS statements."""
    tree = _parse(text)
    if tree is None:
        return []
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, _FUNC) and _statements(n) >= MIN_STATEMENTS:
            try:
                out.add(node_fingerprint(n))
            except RecursionError:
                continue
    return sorted(out)


class Locator:
    """Finds the code a line belongs to in one parsed text (parsed once, asked per finding)."""

    def __init__(self, text: str):
        self.tree = _parse(text)

    def enclosing(self, line: int) -> tuple[str, str] | None:
        """(fingerprint, name) of the innermost function containing `line`, else of the top-level statement."""
        if self.tree is None:
            return None
        best: ast.AST | None = None
        for node in ast.walk(self.tree):
            if isinstance(node, _FUNC) and node.lineno <= line <= (node.end_lineno or node.lineno):
                if best is None or node.lineno >= best.lineno:  # type: ignore[attr-defined]
                    best = node
        try:
            if best is not None:
                return node_fingerprint(best), best.name  # type: ignore[attr-defined]
            for stmt in self.tree.body:
                if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
                    return node_fingerprint(stmt), "<module>"
        except RecursionError:
            return None
        return None


def violation_key(rule_id: str, code_fingerprint: str) -> str:
    return hashlib.sha256(f"{rule_id}\0{code_fingerprint}".encode()).hexdigest()[:16]


def snippet_fingerprint(snippet: str) -> str:
    """When the code cannot be parsed: the flagged text with whitespace collapsed."""
    return hashlib.sha256(" ".join(snippet.split()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
