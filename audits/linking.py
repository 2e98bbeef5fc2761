"""Same-folder modules audited as one program with the script that imports them.

A record's `train_gpt.py` often imports its n-gram helper or model code from a file next to it
(`from online_ngram_tilt import build_hints`). Audited file by file, whatever that helper does is invisible and
the import can only be a "cannot verify". Here the imported file's top-level definitions (functions, classes,
imports, named constants) are appended to the importing script's text, verbatim and line for line, so the
program model resolves calls into them like any function of the script; a `LineMap` turns a line of the
combined text back into the file and line a person opens. The helper's other top-level statements (a
`__main__` block, a loose call) are left out: importing it does not run them in the scored order, and appending
them after the script's own entry point would misplace them.

Nothing is imported or run: files are read as text and parsed with `ast`, like the script itself.
"""
from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field

from audits.positions import split_lines

_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+(\.?)([A-Za-z_]\w*)[\w.]*[ \t]+import\b|import[ \t]+([^#\n;]+))", re.M)
_KEPT = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


@dataclass(frozen=True)
class Segment:
    start: int  # first line of the segment in the combined text
    end: int  # last line, inclusive
    path: str  # the file it was copied from, as displayed
    offset: int  # combined line - offset = line in that file


@dataclass
class LineMap:
    """Lines 1..`own_lines` are the script's own; every other line lies in exactly one appended segment."""

    path: str
    own_lines: int
    segments: list[Segment] = field(default_factory=list)

    def locate(self, line: int) -> tuple[str, int]:
        if line <= self.own_lines:
            return self.path, line
        for s in self.segments:
            if s.start <= line <= s.end:
                return s.path, line - s.offset
        return self.path, line

    @property
    def linked_paths(self) -> list[str]:
        return list(dict.fromkeys(s.path for s in self.segments))


def imported_modules(text: str) -> list[str]:
    """Top-level module names the text imports anywhere (`import a, b as c`, `from a import x`, `from .a import
    x`), read line by line, as candidates: only names that are files in the folder are ever followed."""
    out: list[str] = []
    for m in _IMPORT_LINE.finditer(text):
        if m.group(2):
            out.append(m.group(2))
            continue
        for part in (m.group(3) or "").split(","):
            name = part.strip().split(" ")[0].split(".")[0]
            if name.isidentifier():
                out.append(name)
    return list(dict.fromkeys(out))


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
    return names


def _parse(text: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _kept(stmt: ast.stmt, taken: set[str]) -> bool:
    """A definition, an import or a named constant whose name the combined program does not define yet."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(stmt, _KEPT):
        return stmt.name not in taken
    if isinstance(stmt, ast.Assign):
        return all(isinstance(t, ast.Name) and t.id not in taken for t in stmt.targets)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and stmt.target.id not in taken and stmt.value is not None
    return False


def _shadowed(tree: ast.Module, kept: list[ast.stmt], taken: set[str]) -> bool:
    """Does the module's kept code use one of its own top-level names that the script also defines? Appended,
    that use would resolve to the script's definition, not the module's: such a module is not linked at all."""
    dropped = _top_level_names(tree) & taken
    if not dropped:
        return False
    return any(isinstance(n, ast.Name) and n.id in dropped for s in kept for n in ast.walk(s))


def link(text: str, path: str, modules: list[tuple[str, str]], max_lines: int) -> tuple[str, LineMap]:
    """The script's text with each module's kept top-level statements appended, and where every line came from.

    `modules` are (displayed path, text) in the order to append. A module that does not parse, or that would
    take the combined text past `max_lines`, is not appended (its import stays a "cannot verify"). A name the
    script (or an earlier module) defines at top level is not redefined: the script's own definition wins.
    """
    own = split_lines(text)
    tree = _parse(text)
    taken = _top_level_names(tree) if tree is not None else set()
    lines = list(own)
    linemap = LineMap(path, len(own))
    for mpath, mtext in modules:
        mtree = _parse(mtext)
        if mtree is None:
            continue
        mlines = split_lines(mtext)
        chunks: list[tuple[int, int]] = []
        kept: list[ast.stmt] = []
        for stmt in mtree.body:
            if not _kept(stmt, taken):
                continue
            kept.append(stmt)
            first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            chunks.append((first, stmt.end_lineno or stmt.lineno))
        size = sum(b - a + 1 for a, b in chunks)
        if not chunks or len(lines) + size > max_lines or _shadowed(mtree, kept, taken):
            continue
        taken |= _top_level_names(mtree)
        for a, b in chunks:
            start = len(lines) + 1
            lines.extend(mlines[a - 1: b])
            linemap.segments.append(Segment(start, len(lines), mpath, start - a))
    if not linemap.segments:
        return text, linemap
    return "\n".join(lines) + "\n", linemap
