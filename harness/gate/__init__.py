"""The CI gate on submission pull requests: `scorefirst gate` (docs/gate.md).

For each folder a change adds or modifies under `records/<track>/` (git diff against the merge base, files read
from git objects, nothing checked out or run) the gate gives one verdict per check: legality (the static audit),
format, logs, budgets and significance. It never imports torch.

    from harness.gate import GateOptions, run_gate
    result = run_gate(GateOptions(repo=Path("parameter-golf"), base="origin/main"))
    result.exit_code(), result.reason()

The names below load on first use, so importing one gate module (the config, the schema reader) does not load
the whole gate.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"GateConfig": "config", "Record": "config", "Check": "model", "FolderResult": "model",
            "GateResult": "model", "Message": "model", "Status": "model", "GateOptions": "runner",
            "run_gate": "runner"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
