"""Documents for prepare-data: JSONL or text files, or an embedded default corpus that needs no download.

The embedded corpus is built from text every CPython installation carries: the help topics of ``pydoc_data`` and
the docstrings of the standard library's own source files (read with ``ast``, never imported). It is deterministic
for a given Python installation; its digest goes into every run spec because it differs between Python versions.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, MissingPathError

_SKIP_PARTS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def _docstrings(source: str) -> list[str]:
    tree = ast.parse(source)
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                          ast.AsyncFunctionDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    return [d for d in (ast.get_docstring(n) for n in nodes) if d]


def embedded_documents(min_chars: int = 200) -> list[str]:
    """Help topics first, then one document per stdlib module (its docstrings joined), in path order."""
    from pydoc_data import topics

    docs = [topics.topics[k].strip() for k in sorted(topics.topics)]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if _SKIP_PARTS.intersection(path.relative_to(root).parts):
            continue
        try:
            text = "\n\n".join(_docstrings(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        docs.append(text.strip())
    return [d for d in docs if len(d) >= min_chars]


def corpus_digest(docs: list[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def read_documents(paths: list[Path], text_field: str = "text") -> Iterator[str]:
    """``.jsonl`` files give one document per line (its ``text_field``); any other file is one document."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"input not found: {path}")
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                        raise InputError(f"{path}:{lineno}: no string field {text_field!r}")
                    yield obj[text_field]
        else:
            try:
                yield path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path}: not UTF-8 text") from None
