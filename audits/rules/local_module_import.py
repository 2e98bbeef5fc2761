"""SF-IMPORT-001: code imported from the submission's own folder: audited with the script, not counted in its bytes."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    dotted,
)

_DYNAMIC_IMPORTS = ("importlib.import_module", "import_module", "__import__")
_UNSEEN = "its code is neither audited here nor counted in the artifact"
_LINKED = ("audited here with this file as one program, but its bytes are not counted in the artifact "
           "(PG-SIZE-001: all counted code should live in train_gpt.py)")


def _full(node: cst.CSTNode | None) -> str:
    return cst.helpers.get_full_name_for_node(node) or "" if node is not None else ""


class LocalModuleImport(Rule):
    """Notes imports of code from the submission's own folder; warns where that code cannot be followed.

    What it flags:
        Every relative import (`from . import x`, `from .x import y`), and every absolute import (`import x`,
        `from x import y`, `importlib.import_module("x")`) whose top-level module is `x.py` or a package folder
        `x/` next to the audited file. A module file imported by name (`import x`, `from x import y`,
        `from .x import y`) is read as text and audited with the script as one program (audits/linking.py): the
        calls enter its functions and findings point into it; its import is then an info note about bytes only.
        Everything else (a package folder, `from . import x`, `importlib.import_module`, a module that does not
        parse) is a warning. Stdlib and third-party imports (`torch`, `numpy`) are never flagged; a source with
        no folder (an in-memory snippet) has only its relative imports flagged.

    Why it is illegal:
        It is not illegal by itself. Code the audit cannot follow (pre-eval TTT, re-scoring, a target-keyed cache
        in a package) leaves C1–C4 unconfirmed: "cannot verify", never silence; run the dynamic audit. Separately,
        PG-SIZE-001 counts only `train_gpt.py`'s bytes in the artifact: "All counted code should live in
        `train_gpt.py`", so code in another file is uncounted even when it is audited.

    Example:
        from pg_base import eval_val, train_model  # pg_base.py next to train_gpt.py

    Use instead:
        Put the code in train_gpt.py itself, where it is audited and counted against the 16,000,000-byte
        artifact (packed with a static lzma/b85 decode chain if it needs to be small).
    """

    id = "SF-IMPORT-001"
    name = "local-module-import"
    conditions = (Condition.C1, Condition.C2, Condition.C3, Condition.C4)
    severity = Severity.WARNING
    confidence = Confidence.LOW
    message = "Cannot verify: code imported from the submission's own folder is not audited here"
    ruling = Ruling(
        "README FAQ (PG-SIZE-001); scorefirst policy for what the audit cannot see",
        "RULES.md PG-SIZE-001; generic detectors",
        "Artifact = code bytes + compressed model bytes ≤ 16,000,000 (decimal). All counted code should live in "
        "`train_gpt.py`. When the analyzer cannot see through a construct, it emits an explicit low-confidence "
        "\"cannot verify\" finding. Never silence.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        import os, math, json
        import torch
        import torch.nn.functional as F
        import numpy as np
        import sentencepiece as spm
        from torch import nn
        from collections import OrderedDict
        mod = importlib.import_module("torch.distributed")
    """)]
    INVALID = [Invalid("""
        import torch
        import numpy as np
        from .pg_base import eval_val, train_model
        train_model()
    """, line=3), Invalid("""
        import torch
        from . import helpers
    """, line=2)]

    def check(self, ctx):
        prog = ctx.prog
        local, linked = prog.local_modules, prog.linked_modules
        for n in prog.nodes_of(cst.Import, cst.ImportFrom):
            if type(n) is cst.ImportFrom and n.relative:
                first = _full(n.module).split(".")[0]
                if len(n.relative) == 1 and first in linked:
                    yield self._note(n, f".{_full(n.module)}", first, local, linked)
                else:
                    yield Hit(n, self._relative(n, local))
            elif type(n) is cst.ImportFrom:
                mod = _full(n.module)
                top = mod.split(".")[0]
                if top in local:
                    yield self._note(n, mod, top, local, linked)
            else:
                for alias in n.names:
                    mod = _full(alias.name)
                    top = mod.split(".")[0]
                    if top in local:
                        yield self._note(n, mod, top, local, linked)
                        break
        for n in prog.nodes_of(cst.Call):
            if dotted(n.func) not in _DYNAMIC_IMPORTS or not n.args or type(n.args[0].value) is not cst.SimpleString:
                continue
            try:
                mod = n.args[0].value.evaluated_value
            except Exception:  # noqa: BLE001 - an odd literal is simply not resolved
                continue
            if not isinstance(mod, str):
                continue
            top = mod.split(".")[0]
            if mod.startswith("."):
                yield Hit(n, f"relative import of `{mod}`: code from the submission's own package; {_UNSEEN}")
            elif top in local:
                yield Hit(n, f"`{mod}` is {self._where(top, local)}: {_UNSEEN}")

    def _note(self, n, mod: str, top: str, local: dict[str, str], linked: frozenset[str]) -> Hit:
        """An import of a module audited with the script is a note about bytes; any other, "cannot verify"."""
        if top in linked:
            return Hit(n, f"`{mod}` is {self._where(top, local)}: {_LINKED}", severity=Severity.INFO)
        return Hit(n, f"`{mod}` is {self._where(top, local)}: {_UNSEEN}")

    @staticmethod
    def _where(top: str, local: dict[str, str]) -> str:
        return f"{local[top]} in this folder"

    def _relative(self, n: cst.ImportFrom, local: dict[str, str]) -> str:
        dots = "".join("." for _ in n.relative)
        mod = _full(n.module)
        if mod:
            shown, first = f"{dots}{mod}", mod.split(".")[0]
        else:
            names = [] if type(n.names) is cst.ImportStar else [_full(a.name) for a in n.names]
            shown = ", ".join(f"{dots}{x}" for x in names) or dots
            first = names[0] if names else ""
        if len(dots) == 1 and first in local:
            return f"relative import `{shown}`: `{first}` is {self._where(first, local)}: {_UNSEEN}"
        return f"relative import `{shown}`: code from the submission's own package; {_UNSEEN}"
