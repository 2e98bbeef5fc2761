"""The CI gate on submission pull requests: `scorefirst gate` (docs/gate.md).

For each folder a change adds or modifies under `records/<track>/` (git diff against the merge base, files read
from git objects, nothing checked out or run) the gate gives one verdict per check: legality (the static audit),
format, logs, budgets and significance. It never imports torch.

    from harness.gate import GateOptions, run_gate
    result = run_gate(GateOptions(repo=Path("parameter-golf"), base="origin/main"))
    result.exit_code(), result.reason()
"""
from harness.gate.config import GateConfig, Record
from harness.gate.model import Check, FolderResult, GateResult, Message, Status
from harness.gate.runner import GateOptions, run_gate

__all__ = ["Check", "FolderResult", "GateConfig", "GateOptions", "GateResult", "Message", "Record", "Status",
           "run_gate"]
