"""Source positions of CST nodes without libcst's `PositionProvider`, which code-generates the whole module
(about twice the cost of the parse) to answer a few hundred questions.

Statements get their lines from the stdlib `ast` tree the engine's precheck parses anyway, paired with the CST's
statements in order (for 3.12 f-strings, which 3.11's ast rejects, from a copy with their insides blanked).
A statement, or a compound statement's header, that sits on one line gives that line to every
node in it; anything finer is code-generated from that one statement (its body stubbed out), the first time a node
in it is asked about, starting from the statement's line and indentation. The ranges are PositionProvider's own
(1-based lines, 0-based columns), since its codegen state does the counting. Files `ast` cannot read even so
(3.12 `type` statements under 3.11), statements that do not pair up, and nodes outside the statements fall back to
PositionProvider.
"""
from __future__ import annotations

import ast
import re
import warnings

import libcst as cst
from libcst.metadata.position_provider import PositionProvidingCodegenState

from audits.walk import children, walk

Range = tuple[int, int, int, int]  # start line, start column, end line, end column

_SMALL = {
    cst.Expr: ast.Expr, cst.Assign: ast.Assign, cst.AnnAssign: ast.AnnAssign, cst.AugAssign: ast.AugAssign,
    cst.Return: ast.Return, cst.Raise: ast.Raise, cst.Pass: ast.Pass, cst.Break: ast.Break,
    cst.Continue: ast.Continue, cst.Del: ast.Delete, cst.Import: ast.Import, cst.ImportFrom: ast.ImportFrom,
    cst.Global: ast.Global, cst.Nonlocal: ast.Nonlocal, cst.Assert: ast.Assert,
}
if hasattr(ast, "TypeAlias"):  # Python >= 3.12
    _SMALL[cst.TypeAlias] = ast.TypeAlias
_COMPOUND = {
    cst.If: (ast.If,), cst.For: (ast.For, ast.AsyncFor), cst.While: (ast.While,), cst.With: (ast.With, ast.AsyncWith),
    cst.Try: (ast.Try,), cst.TryStar: (getattr(ast, "TryStar", ast.Try),), cst.Match: (ast.Match,),
    cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef), cst.ClassDef: (ast.ClassDef,),
}
_HANDLERS = (cst.ExceptHandler, cst.ExceptStarHandler)
_STUB = cst.SimpleStatementSuite(body=(cst.Pass(),))
_NEWLINE = re.compile(r"\r\n?|\n")  # how ast and libcst count lines


def split_lines(text: str) -> list[str]:
    """The physical lines as ast and libcst number them: split on \\n, \\r\\n and \\r only. `str.splitlines()`
    also breaks on \\f, \\v, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029, which would shift every later line."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # a final line break ends the last line, as with splitlines()
    return lines


class _Mismatch(Exception):
    """The CST and the ast tree disagree; positions come from PositionProvider instead."""


class _Sink:
    """What PositionProvidingCodegenState writes into: a provider's `_computed` dict."""

    def __init__(self) -> None:
        self._computed: dict = {}


class Positions:
    """`line(node)` and `range(node)` for the nodes of one parsed module, equal to PositionProvider's."""

    def __init__(self, module: cst.Module, text: str, tree: ast.Module | None):
        self.module = module
        if tree is None:
            text, tree = _blank_fstrings(module, text)
        self._lines = _NEWLINE.split(text)
        self._ascii = text.isascii()
        self._ranges: dict[cst.CSTNode, object] = {}  # node -> CodeRange, from codegen of its statement
        self._start: dict[int, tuple[int, int]] = {}  # statement / handler -> (line, column), from ast
        self._end: dict[int, tuple[int, int]] = {}  # simple statement (line) -> (line, column), from ast
        self._deco: dict[int, int] = {}  # decorated def/class -> line of its first decorator
        self._indent: dict[int, tuple[str, ...]] = {}  # owner -> indentation tokens in force at it
        self._owner: dict[int, cst.CSTNode] = {}  # node -> the statement or clause that code-generates it
        self._single: dict[int, int] = {}  # owner whose nodes all start on one line -> that line
        self._elif: set[int] = set()
        self._full: dict | None = None
        if tree is None:
            self._fall_back()
            return
        try:
            self._block(module.body, tree.body, ())
        except (_Mismatch, IndexError, AttributeError):
            self._fall_back()

    # -- queries ---------------------------------------------------------------------------------------
    def line(self, node: cst.CSTNode) -> int:
        owner = self._owner.get(id(node))
        if owner is not None:
            line = self._single.get(id(owner))
            if line is not None and self._full is None:
                return line
        start = self._start.get(id(node))
        if start is not None and self._full is None:
            return start[0]
        return self.range(node)[0]

    def range(self, node: cst.CSTNode) -> Range:
        if self._full is not None:
            r = self._full[node]
            return r.start.line, r.start.column, r.end.line, r.end.column
        r = self._ranges.get(node)
        if r is not None:
            return r.start.line, r.start.column, r.end.line, r.end.column
        derived = self._derived(node)
        if derived is not None:
            return derived
        owner = self._owner.get(id(node))
        if owner is None:
            self._fall_back()
        else:
            self._codegen(owner)
        return self.range(node)

    # -- pairing the CST with the ast tree -------------------------------------------------------------
    def _block(self, stmts, nodes: list[ast.stmt], indent: tuple[str, ...]) -> None:
        i = 0
        for stmt in stmts:
            if type(stmt) is cst.SimpleStatementLine:
                k = len(stmt.body)
                end = self._smalls(stmt.body, nodes[i:i + k])
                i += k
                start = self._start[id(stmt)] = self._start[id(stmt.body[0])]
                self._end[id(stmt)] = self._end[id(stmt.body[-1])]
                self._indent[id(stmt)] = indent
                self._own(stmt, (stmt,), start[0] if start[0] == end else None)
            else:
                self._compound(stmt, nodes[i], indent)
                i += 1
        if i != len(nodes):
            raise _Mismatch

    def _smalls(self, smalls, nodes: list[ast.stmt]) -> int:
        """Record each small statement's start; returns the line the last one ends on."""
        if len(smalls) != len(nodes):
            raise _Mismatch
        for s, a in zip(smalls, nodes):
            if _SMALL.get(type(s)) is not type(a):
                raise _Mismatch
            self._start[id(s)] = self._pos(a.lineno, a.col_offset)
            self._end[id(s)] = self._pos(a.end_lineno, a.end_col_offset)
        return nodes[-1].end_lineno

    def _compound(self, stmt, a: ast.AST, indent: tuple[str, ...]) -> None:
        if type(a) not in _COMPOUND.get(type(stmt), ()):
            raise _Mismatch
        self._start[id(stmt)] = self._pos(a.lineno, a.col_offset)
        self._indent[id(stmt)] = indent
        if getattr(stmt, "decorators", None):
            self._deco[id(stmt)] = a.decorator_list[0].lineno
        if type(stmt) is cst.Match:
            self._match(stmt, a, indent)
            return
        clauses = []
        if type(stmt) in (cst.Try, cst.TryStar):
            if len(stmt.handlers) != len(a.handlers):
                raise _Mismatch
            for h, ah in zip(stmt.handlers, a.handlers):
                self._start[id(h)] = self._pos(ah.lineno, ah.col_offset)
                self._indent[id(h)] = indent
                self._header(h, ah.body, indent)
                clauses.append(h)
            if stmt.finalbody is not None:
                self._clause(stmt.finalbody, a.finalbody, indent)
                clauses.append(stmt.finalbody)
        orelse = getattr(stmt, "orelse", None)
        if type(orelse) is cst.If:
            if len(a.orelse) != 1:
                raise _Mismatch
            self._elif.add(id(orelse))
            self._compound(orelse, a.orelse[0], indent)
        elif orelse is not None:
            self._clause(orelse, a.orelse, indent)
        self._header(stmt, a.body, indent, (*clauses, orelse))

    def _header(self, owner, body_nodes: list[ast.stmt], indent: tuple[str, ...], skip: tuple = ()) -> None:
        """Own the header nodes of a compound statement or clause, then pair its body."""
        body = owner.body
        header = [c for c in children(owner) if c is not body and not any(c is s for s in skip)]
        if type(body) is cst.IndentedBlock:
            first = body.body[0] if body.body else None
            colon = self._top(first, body_nodes[0]) - 1 if first is not None else None
            single = self._start[id(owner)][0] if colon == self._start[id(owner)][0] and \
                id(owner) not in self._deco else None
            self._own(owner, header, single)
            self._block(body.body, body_nodes, indent + (self.module.default_indent if body.indent is None
                                                         else body.indent,))
        else:
            end = self._smalls(body.body, body_nodes)
            start = self._start[id(owner)][0]
            self._own(owner, (*header, body), start if end == start and id(owner) not in self._deco else None)

    def _clause(self, clause, body_nodes: list[ast.stmt], indent: tuple[str, ...]) -> None:
        """`else:` / `finally:` have no ast node: their line is the one before their body's first line."""
        body = clause.body
        if type(body) is cst.IndentedBlock:
            line = self._top(body.body[0], body_nodes[0]) - 1
        else:
            line = body_nodes[0].lineno
        keyword = "else" if type(clause) is cst.Else else "finally"
        col = len("".join(indent))
        if not self._lines[line - 1][col:].startswith(keyword):
            raise _Mismatch
        self._start[id(clause)] = (line, col)
        self._indent[id(clause)] = indent
        self._header(clause, body_nodes, indent)

    def _match(self, stmt: cst.Match, a: ast.Match, indent: tuple[str, ...]) -> None:
        """Match statements are rare: the whole statement is code-generated at once."""
        if len(stmt.cases) != len(a.cases):
            raise _Mismatch
        header = [stmt.subject]
        for case in stmt.cases:
            header += [case, case.pattern] + ([case.guard] if case.guard is not None else [])
        self._own(stmt, header, None)
        for case, ac in zip(stmt.cases, a.cases):
            if type(case.body) is cst.IndentedBlock:
                self._block(case.body.body, ac.body, indent + (self.module.default_indent if case.body.indent is None
                                                               else case.body.indent,))
            else:
                self._smalls(case.body.body, ac.body)

    def _top(self, stmt, a: ast.stmt) -> int:
        """First line a statement's codegen writes: its leading comment/blank lines, then decorators."""
        line = a.decorator_list[0].lineno - len(stmt.decorators[0].leading_lines) \
            if getattr(stmt, "decorators", None) else a.lineno
        return line - len(stmt.leading_lines)

    def _own(self, owner, nodes, single: int | None) -> None:
        owned = self._owner
        todo = list(nodes)
        while todo:
            n = todo.pop()
            owned[id(n)] = owner
            todo.extend(children(n))
        if single is not None:
            self._single[id(owner)] = single

    def _pos(self, line: int, col: int) -> tuple[int, int]:
        """ast columns count UTF-8 bytes; CST columns count characters."""
        if self._ascii:
            return line, col
        return line, len(self._lines[line - 1].encode()[:col].decode(errors="replace"))

    # -- ranges --------------------------------------------------------------------------------------------
    def _derived(self, node) -> Range | None:
        """Statements, blocks and clauses span from their own start to the end of their last part; a simple
        statement's end is ast's."""
        t = type(node)
        if t is cst.IndentedBlock:
            return self.range(node.body[0])[:2] + self.range(node.body[-1])[2:]
        start = self._start.get(id(node))
        if start is None:
            return None
        end = self._end.get(id(node))
        if end is not None:
            return start + end
        if t in (cst.Try, cst.TryStar):
            last = node.finalbody or node.orelse or (node.handlers[-1] if node.handlers else node.body)
        elif t is cst.Match:
            last = node.cases[-1]
        else:
            last = getattr(node, "orelse", None) or node.body
        return start + self.range(last)[2:]

    def _codegen(self, owner) -> None:
        node = owner
        if type(owner) is not cst.Match and type(getattr(owner, "body", None)) is cst.IndentedBlock and \
                type(owner) not in (cst.Try, cst.TryStar):
            changes = {"body": _STUB}
            if getattr(owner, "orelse", None) is not None:
                changes["orelse"] = None
            node = owner.with_changes(**changes)
        elif getattr(owner, "orelse", None) is not None and type(owner) not in (cst.Try, cst.TryStar):
            node = owner.with_changes(orelse=None)
        sink = _Sink()
        state = PositionProvidingCodegenState(default_indent=self.module.default_indent,
                                              default_newline=self.module.default_newline, provider=sink)
        state.indent_tokens = list(self._indent[id(owner)])
        if id(owner) in self._deco:
            state.line = self._deco[id(owner)] - len(owner.decorators[0].leading_lines) - len(owner.leading_lines)
        else:
            state.line = self._start[id(owner)][0] - len(owner.leading_lines)
        if id(owner) in self._elif:
            node._codegen(state, is_elif=True)
        else:
            node._codegen(state)
        got = sink._computed[node].start
        if (got.line, got.column) != self._start[id(owner)]:
            self._fall_back()
            return
        if node is not owner:
            del sink._computed[node]
        self._ranges.update(sink._computed)

    def _fall_back(self) -> None:
        """PositionProvider's pass, run directly (its MetadataWrapper also visits the whole tree first)."""
        if self._full is None:
            sink = _Sink()
            self.module._codegen(PositionProvidingCodegenState(
                default_indent=self.module.default_indent, default_newline=self.module.default_newline, provider=sink))
            self._full = sink._computed


def _blank_fstrings(module: cst.Module, text: str) -> tuple[str, ast.Module | None]:
    """The text with every f-string's inside replaced by `x`s (same length, same line breaks) and its ast tree.

    Python 3.12 lets an f-string nest strings in its own quotes, which 3.11's ast rejects; blanked, every statement
    keeps its lines and columns. Returns no tree when that is not enough (e.g. a 3.12 `type` statement).
    """
    codes = {module.code_for_node(n): n for n in walk(module, into_defs=True) if type(n) is cst.FormattedString}
    for code in sorted(codes, key=len, reverse=True):  # an outer f-string before the ones nested in it
        node = codes[code]
        i = code.find(node.start) + len(node.start)
        j = code.rfind(node.end)
        inside = code[i:j]
        if len(node.end) == 1 and ("\n" in inside or "\r" in inside):
            return text, None  # a line break inside a one-quote f-string: 3.11 has no equivalent
        text = text.replace(code, code[:i] + re.sub(r"[^\r\n]", "x", inside) + code[j:])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return text, ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return text, None
