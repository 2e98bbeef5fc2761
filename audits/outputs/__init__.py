"""Every output is a view of `AuditResult`s: terminal (concise, full), JSON, SARIF 2.1.0, GitHub annotations.

`render(fmt, results)` returns the text for one format; `write_atomic` writes a file so that a failure never
leaves a half-written report (nor destroys the previous one).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from audits.results import AuditResult, Finding

FORMATS = ("concise", "full", "json", "sarif", "github")


def render(fmt: str, results: list[AuditResult], root: str | None = None) -> str:
    """`root`: the local folder relative paths resolve against (SARIF's SRCROOT); None leaves it unstated."""
    if fmt == "concise":
        from audits.outputs.terminal import concise

        return concise(results)
    if fmt == "full":
        from audits.outputs.terminal import full

        return full(results)
    if fmt == "json":
        from audits.outputs.json_out import dumps

        return dumps(results)
    if fmt == "sarif":
        from audits.outputs.sarif import dumps as sarif_dumps

        return sarif_dumps(results, root)
    if fmt == "github":
        from audits.outputs.github import annotations

        return annotations(results)
    raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decoded_note(f: Finding) -> str:
    """'decoded layer 1 (lzma, b85decode) of the exec at line 12' for findings inside packed code."""
    if f.origin is None:
        return ""
    codecs = ", ".join(f.origin.codecs)
    return f"decoded layer {f.origin.layer} ({codecs}) of the exec at line {f.origin.outer_line}"


def file_line(f: Finding) -> int:
    """The line of the audited file a finding belongs to (the exec line for findings in decoded code)."""
    return f.origin.outer_line if f.origin is not None else f.line
