"""Which Python files of a submission folder run: the scripts its run commands launch and what they import.

A records folder often carries tools next to the submission: data download and tokenizer scripts, plotting,
conversion helpers. They run before training or never, so a network download or a byte-count shortcut in them
is not part of the scored run. A file is *run* when it is the competition's entry script `train_gpt.py` or a
run command in the folder's README or shell scripts launches it under a distributed launcher (`torchrun ...
train_gpt.py`); a plain `python3 download_data.py` line is preparation. A sibling is run when a run file mentions its module name anywhere (an import, `importlib`,
a subprocess line). Anything that could hide a mention — packed code decoded at run time, `exec`, `__import__`,
`importlib` with a computed name — makes every file count as run. The decision only ever downgrades findings of
files that nothing runs, and says so; it never hides a file from the audit.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from audits.runenv import launched_scripts

ENTRY_SCRIPT = "train_gpt.py"
_OPAQUE_BUILTINS = frozenset({"exec", "eval", "compile", "__import__"})
_OPAQUE_LOADERS = frozenset({"import_module", "run_path", "run_module", "exec_module", "load_module"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _mentions(text: str) -> set[str] | None:
    """Every identifier and every word in a string literal of a file, or None when the file can load code
    the text does not show (exec/eval/compile, `__import__`, importlib, runpy) or cannot be parsed here."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in _OPAQUE_BUILTINS | _OPAQUE_LOADERS or \
                    isinstance(f, ast.Attribute) and f.attr in _OPAQUE_LOADERS:
                return None
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.update(_WORD.findall(node.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            words.update(_WORD.findall(node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.update(_WORD.findall(node.value))
    return words


def auxiliary_files(folder: Path, texts: dict[Path, str]) -> dict[Path, str]:
    """Files directly in `folder` (keys of `texts`) that nothing runs, each with the reason a person can check."""
    local = {p: t for p, t in texts.items() if p.parent == folder}
    if len(local) < 2:
        return {}
    launched = {folder / name for name in launched_scripts(folder)}
    entries = sorted(p for p in local if p in launched or p.name == ENTRY_SCRIPT)
    if not entries:
        return {}
    run = set(entries)
    todo = list(entries)
    while todo:
        words = _mentions(local[todo.pop()])
        if words is None:
            return {}
        for p in local:
            if p not in run and p.stem in words:
                run.add(p)
                todo.append(p)
    names = ", ".join(f"`{p.name}`" for p in entries)
    return {p: f"`{p.name}` is not part of the scored run: that is {names}, and no file of it mentions `{p.stem}`"
            for p in local if p not in run}
