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


def _serialize(root: ast.AST, bound: set[str]) -> str:
    """A pre-order serialization of `root` with the normalizations of the module docstring (an explicit stack:
    nested generators cost a frame per level for every token)."""
    out: list[str] = []
    renames: dict[str, str] = {}
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
            continue
        out.append(type(node).__name__)
        if isinstance(node, (ast.Name, ast.arg)):
            name = node.id if isinstance(node, ast.Name) else node.arg
            if name in bound:
                name = renames.setdefault(name, f"v{len(renames)}")
            out.append(name)
            if isinstance(node, ast.arg) and node.annotation is not None:
                stack.append(node.annotation)
            continue
        if isinstance(node, ast.Constant):
            v = node.value
            out.append("#" if isinstance(v, (int, float, complex)) and not isinstance(v, bool) else repr(v))
            continue
        items: list[object] = []
        for name, value in ast.iter_fields(node):
            if name in ("type_comment", "ctx"):
                continue
            if isinstance(value, list):
                if name == "body" and value and _is_docstring(value[0]):
                    value = value[1:]
                items.append(f"[{name}")
                items.extend(v if isinstance(v, ast.AST) else repr(v) for v in value)
                items.append("]")
            elif isinstance(value, ast.AST):
                items.append(name)
                items.append(value)
            elif name in ("name", "attr", "arg", "module"):
                items.append(repr(value))
        stack.extend(reversed(items))
    return "\0".join(out)


def _is_docstring(stmt: ast.AST) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def node_fingerprint(node: ast.AST, bound: set[str] | None = None) -> str:
    """16 hex digits identifying `node` up to renamed locals, changed numbers, comments and layout."""
    if bound is None:
        bound = _bound_names(node) if isinstance(node, _FUNC) else set()
    return hashlib.sha256(_serialize(node, bound).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _functions(tree: ast.AST) -> list[tuple[ast.AST, int, set[str]]]:
    """Every function with its statement count and the names it binds (nested functions' included), in one walk."""
    found: list[list] = []
    stack: list[tuple[ast.AST, tuple]] = [(tree, ())]
    while stack:
        node, open_ = stack.pop()
        if open_:
            if isinstance(node, ast.stmt):
                for f in open_:
                    f[1] += 1
            if isinstance(node, ast.arg):
                for f in open_:
                    f[2].add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                for f in open_:
                    f[2].add(node.id)
        if isinstance(node, _FUNC):
            entry = [node, 0, set()]
            found.append(entry)
            open_ = open_ + (entry,)
        stack.extend((child, open_) for child in ast.iter_child_nodes(node))
    return [(n, c, b) for n, c, b in found]


class ParsedCode:
    """One text, parsed once: its function fingerprints and the code around any line (asked per finding)."""

    def __init__(self, text: str):
        self.tree = _parse(text)
        self.functions = _functions(self.tree) if self.tree is not None else []
        self._memo: dict[int, str | None] = {}

    def _fingerprint(self, node: ast.AST, bound: set[str] | None = None) -> str | None:
        key = id(node)
        if key not in self._memo:
            try:
                self._memo[key] = node_fingerprint(node, bound)
            except RecursionError:
                self._memo[key] = None
        return self._memo[key]

    def function_fingerprints(self) -> list[str]:
        """Every function (methods and nested ones included) with at least MIN_STATEMENTS statements."""
        out = {self._fingerprint(node, bound) for node, statements, bound in self.functions
               if statements >= MIN_STATEMENTS}
        return sorted(h for h in out if h)

    def enclosing(self, line: int) -> tuple[str, str] | None:
        """(fingerprint, name) of the innermost function containing `line`, else of the top-level statement."""
        if self.tree is None:
            return None
        best = None
        for node, _, bound in self.functions:
            if node.lineno <= line <= (node.end_lineno or node.lineno) and (best is None or node.lineno >= best[0].lineno):
                best = (node, bound)
        if best is not None:
            h = self._fingerprint(*best)
            return (h, best[0].name) if h else None  # type: ignore[attr-defined]
        for stmt in self.tree.body:
            if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
                h = self._fingerprint(stmt)
                return (h, "<module>") if h else None
        return None


def function_fingerprints(text: str) -> list[str]:
    return ParsedCode(text).function_fingerprints()


def violation_key(rule_id: str, code_fingerprint: str) -> str:
    return hashlib.sha256(f"{rule_id}\0{code_fingerprint}".encode()).hexdigest()[:16]


def snippet_fingerprint(snippet: str) -> str:
    """When the code cannot be parsed: the flagged text with whitespace collapsed."""
    return hashlib.sha256(" ".join(snippet.split()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
