"""Result objects of the gate. Terminal, JSON, SARIF, annotations and Markdown are all views of these.

A `GateResult` holds one `FolderResult` per submission folder the change adds or modifies; each folder has one
`Check` per check (legality, format, logs, budgets, significance) with a `Status` and located `Message`s, and the
static audit's own `AuditResult` for its legality check.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from audits.results import AuditResult
from audits.types import Verdict

GATE_SCHEMA = "scorefirst.gate/1"
CHECKS = ("legality", "format", "logs", "budgets", "significance")


Status = Verdict  # a gate check's status is a verdict (SKIP: did not apply; ERROR: could not judge, exit 2)


def worst(statuses: list[Status], default: Status = Status.PASS) -> Status:
    return Verdict.worst(*statuses) or default


LEVEL_STATUS = {"error": Status.FAIL, "warning": Status.WARN, "note": Status.PASS}


@dataclass
class Message:
    """One located problem or note. `path` is repository-relative; `line`/`column` are 1-based, 0 when unknown."""

    rule: str  # PG-FMT, PG-SIZE-001, PG-TIME-TRAIN, PG-TIME-EVAL, PG-STAT-001, PG-LOG, PG-BPB-001, ...
    level: str  # "error" (blocks), "warning" (a person should look), "note"
    text: str
    path: str
    line: int = 0
    column: int = 0
    key: str = ""  # stable identity for fingerprints (the text may carry numbers that change)

    @property
    def location(self) -> str:
        loc = self.path
        if self.line:
            loc += f":{self.line}"
            if self.column:
                loc += f":{self.column}"
        return loc

    def fingerprint(self) -> str:
        ident = self.key or " ".join(self.text.split())
        return hashlib.sha256(f"{self.rule}\0{self.path}\0{ident}".encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "text": self.text, "path": self.path, "line": self.line,
                "column": self.column, "fingerprint": self.fingerprint()}


@dataclass
class Check:
    name: str
    status: Status = Status.PASS
    summary: str = ""
    messages: list[Message] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, rule: str, level: str, text: str, path: str, line: int = 0, column: int = 0,
            key: str = "") -> Message:
        m = Message(rule, level, text, path, line, column, key)
        self.messages.append(m)
        return m

    def settle(self, summary: str = "") -> Check:
        """Status from the messages (unless already SKIP/ERROR); keeps a summary given earlier."""
        if self.status not in (Status.SKIP, Status.ERROR):
            self.status = worst([self.status] + [LEVEL_STATUS[m.level] for m in self.messages])
        if summary:
            self.summary = summary
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary,
                "messages": [m.to_dict() for m in self.messages], "data": self.data}


@dataclass
class FolderResult:
    folder: str  # records/<track>/<name>
    track: str
    change: str  # "added" or "modified"
    checks: dict[str, Check] = field(default_factory=dict)
    audit: AuditResult | None = None
    seeds: list[dict[str, Any]] = field(default_factory=list)  # the per-seed table

    @property
    def status(self) -> Status:
        return worst([c.status for c in self.checks.values()])

    @property
    def messages(self) -> list[Message]:
        return [m for c in self.checks.values() for m in c.messages]

    def blocking_brief(self) -> str:
        bad = [f"{n} {c.status.value}" for n, c in self.checks.items() if c.status.rank >= Status.FAIL.rank]
        return ", ".join(bad)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "track": self.track, "change": self.change, "verdict": verdict_word(self.status),
                "status": self.status.value, "checks": {n: c.to_dict() for n, c in self.checks.items()},
                "seeds": self.seeds, "audit": self.audit.to_dict() if self.audit is not None else None}


def verdict_word(status: Status) -> str:
    return {Status.PASS: "pass", Status.SKIP: "pass", Status.WARN: "pass-with-warnings", Status.FAIL: "blocked",
            Status.ERROR: "error"}[status]


@dataclass
class GateResult:
    repo: str
    base: str  # the ref as given (or chosen)
    head: str
    base_commit: str = ""
    head_commit: str = ""
    merge_base: str = ""  # what the change is compared with (for an already merged head: its merge's first parent)
    merged_by: str = ""  # the base branch already contains the head: the commit that merged it, whose files are read
    folders: list[FolderResult] = field(default_factory=list)
    changed: list[dict[str, str]] = field(default_factory=list)  # every changed path: {"status", "path"[, "from"]}
    tool: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the gate itself could not run (git failure, ...): exit 2
    html_error: str | None = None  # the HTML report (--html) could not be written: exit 2
    pr: int | None = None

    @property
    def status(self) -> Status:
        if self.error:
            return Status.ERROR
        return worst([f.status for f in self.folders])

    def exit_code(self) -> int:
        s = self.status
        return 2 if s is Status.ERROR or self.html_error else 1 if s is Status.FAIL else 0

    def reason(self) -> str:
        """The one-line reason for the exit code."""
        if self.error:
            return self.error
        if self.html_error:
            return self.html_error
        if not self.folders:
            return "nothing to gate: the change adds or modifies no folder under records/"
        errs = [f for f in self.folders if f.status is Status.ERROR]
        if errs:
            f = errs[0]
            first = next((m for c in f.checks.values() if c.status is Status.ERROR for m in c.messages), None)
            why = f"{first.location}: {first.text}" if first else f.blocking_brief()
            more = f" (+{len(errs) - 1} more folders)" if len(errs) > 1 else ""
            return f"could not judge {f.folder}: {why}{more}"
        blocked = [f for f in self.folders if f.status is Status.FAIL]
        if blocked:
            parts = [f"{f.folder} ({f.blocking_brief()})" for f in blocked[:3]]
            more = f"; +{len(blocked) - 3} more folders" if len(blocked) > 3 else ""
            return f"blocked: {'; '.join(parts)}{more}"
        warned = [f for f in self.folders if f.status is Status.WARN]
        n = len(self.folders)
        s = "s" if n != 1 else ""
        if warned:
            return f"passed with warnings: {n} folder{s} ({', '.join(f.folder for f in warned)} need a look)"
        return f"passed: {n} folder{s} ({', '.join(f.folder for f in self.folders)})"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": GATE_SCHEMA, "tool": self.tool, "repo": self.repo, "pr": self.pr,
                "base": {"ref": self.base, "commit": self.base_commit},
                "head": {"ref": self.head, "commit": self.head_commit},
                "merge_base": self.merge_base, "merged_by": self.merged_by or None, "verdict": verdict_word(self.status), "status": self.status.value,
                "exit_code": self.exit_code(), "reason": self.reason(), "error": self.error,
                "html_error": self.html_error, "config": self.config,
                "changed": self.changed, "folders": [f.to_dict() for f in self.folders]}
