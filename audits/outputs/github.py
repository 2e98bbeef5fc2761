"""GitHub Actions workflow-command annotations (`::error file=…,line=…::message`), capped as GitHub caps them.

GitHub shows at most 10 error, 10 warning and 10 notice annotations per step and drops the rest silently, so
we emit at most that many of each and end with one notice counting what was left out. Escaping follows the
Actions toolkit: data escapes `%`, CR and LF; property values also escape `:` and `,`.
"""
from __future__ import annotations

from audits.outputs import decoded_note, file_line
from audits.results import AuditResult
from audits.types import Severity, Status

CAP = {"error": 10, "warning": 10, "notice": 9}  # one notice slot is kept for the "N more" line
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def command(level: str, message: str, **props: object) -> str:
    parts = [f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None]
    return f"::{level}{' ' + ','.join(parts) if parts else ''}::{escape_data(message)}"


def annotations(results: list[AuditResult]) -> str:
    items: list[tuple[str, int, str]] = []  # (level, order, line)
    for result in results:
        for fr in result.files:
            if fr.error:
                items.append(("error", 0, command("error", fr.error, file=fr.path,
                                                  title=f"scorefirst: cannot audit ({fr.error_kind})")))
        for f in result.findings:
            if f.status is not Status.ACTIVE:
                continue
            level = _LEVEL[f.severity]
            msg = f"{f.message} [{', '.join(c.value for c in f.conditions)}]"
            if f.origin is not None:
                msg = f"{msg} (decoded line {f.line}, in {decoded_note(f)})"
                props = dict(file=f.path, line=file_line(f))
            else:
                props = dict(file=f.path, line=f.line, endLine=f.end_line, col=f.column, endColumn=f.end_column)
                if f.end_line != f.line:
                    props.pop("col"), props.pop("endColumn")
            items.append((level, 1, command(level, msg, **props, title=f"{f.rule_id} {f.rule_name}")))
    shown: list[str] = []
    used = {k: 0 for k in CAP}
    dropped = 0
    for level, _order, line in sorted(items, key=lambda t: t[1]):
        if used[level] < CAP[level]:
            used[level] += 1
            shown.append(line)
        else:
            dropped += 1
    if dropped:
        shown.append(command("notice", f"{dropped} more finding{'s' if dropped != 1 else ''} not shown as annotations "
                                       "(GitHub shows at most 10 per level and step); see the JSON or SARIF report",
                             title="scorefirst"))
    return "\n".join(shown) + ("\n" if shown else "")
