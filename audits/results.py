"""Result objects of an audit. JSON, SARIF, terminal, annotations and HTML are all views of these.

The JSON form (``AuditResult.to_dict``) is the versioned schema documented in ``audits/schemas/result.schema.json``;
``from_dict`` reads it back so reports and the CI gate work from stored results without re-running anything.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from audits.dynamic_result import CHECK_CONDITIONS, DynamicResult
from audits.types import Condition, Confidence, Severity, Status, Verdict, combined

SCHEMA_VERSION = "1.1"


@dataclass
class Related:
    line: int
    message: str
    path: str = ""  # another file of the same program (a linked same-folder module); "" is the finding's own

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message, **({"path": self.path} if self.path else {})}


@dataclass
class Origin:
    """Where decoded (self-extracting) code came from: the layer chain and the outer exec line."""

    layer: int
    outer_line: int
    codecs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Finding:
    rule_id: str
    rule_name: str
    conditions: list[Condition]
    severity: Severity
    confidence: Confidence
    message: str
    path: str
    line: int
    column: int  # 1-based
    end_line: int
    end_column: int  # 1-based, exclusive
    snippet: str
    status: Status = Status.ACTIVE
    status_reason: str = ""
    related: list[Related] = field(default_factory=list)
    origin: Origin | None = None
    fingerprint: str = ""
    # For an inactive finding: the environment defaults (`KEY=value`) that alone keep its code from running.
    default_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "conditions": [c.value for c in self.conditions],
            "severity": self.severity.value,
            "confidence": self.confidence.value,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "snippet": self.snippet,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "related": [r.to_dict() for r in self.related],
            "origin": self.origin.to_dict() if self.origin else None,
            "fingerprint": self.fingerprint,
            **({"default_keys": list(self.default_keys)} if self.default_keys else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        return cls(
            rule_id=d["rule_id"],
            rule_name=d["rule_name"],
            conditions=[Condition(c) for c in d["conditions"]],
            severity=Severity(d["severity"]),
            confidence=Confidence(d["confidence"]),
            message=d["message"],
            path=d["path"],
            line=d["line"],
            column=d["column"],
            end_line=d["end_line"],
            end_column=d["end_column"],
            snippet=d["snippet"],
            status=Status(d["status"]),
            status_reason=d.get("status_reason", ""),
            related=[Related(**r) for r in d.get("related", [])],
            origin=Origin(**d["origin"]) if d.get("origin") else None,
            fingerprint=d.get("fingerprint", ""),
            default_keys=list(d.get("default_keys", [])),
        )


@dataclass
class Suppression:
    """A `# scorefirst: ignore[RULE] reason` comment; `used` is False when it suppressed nothing."""

    path: str
    line: int
    rule_ids: list[str]
    reason: str
    used: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecodedSource:
    """A layer of self-extracting code, decoded without running it."""

    layer: int
    outer_line: int
    codecs: list[str]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileResult:
    path: str
    sha256: str = ""
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    decoded: list[DecodedSource] = field(default_factory=list)
    error: str | None = None  # a file that could not be audited (unreadable, binary, syntax error…)
    error_kind: str | None = None
    source: str | None = None  # kept for reports; omitted from JSON unless asked

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.ACTIVE]

    def to_dict(self, with_source: bool = False) -> dict[str, Any]:
        d = {
            "path": self.path,
            "sha256": self.sha256,
            "lines": self.lines,
            "error": self.error,
            "error_kind": self.error_kind,
            "verdict": {c.value: v.value for c, v in condition_verdicts(self.findings).items()},
            "findings": [f.to_dict() for f in self.findings],
            "suppressions": [s.to_dict() for s in self.suppressions],
            "decoded": [x.to_dict() for x in self.decoded],
        }
        if with_source:
            d["source"] = self.source
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FileResult":
        return cls(
            path=d["path"],
            sha256=d.get("sha256", ""),
            lines=d.get("lines", 0),
            findings=[Finding.from_dict(f) for f in d.get("findings", [])],
            suppressions=[Suppression(**s) for s in d.get("suppressions", [])],
            decoded=[DecodedSource(**x) for x in d.get("decoded", [])],
            error=d.get("error"),
            error_kind=d.get("error_kind"),
            source=d.get("source"),
        )


@dataclass
class EnvSetting:
    key: str
    value: str
    source: str  # "--env", "README.md:12", "run.sh:3"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditResult:
    """One audit run over one submission (a file or a folder)."""

    target: str
    files: list[FileResult] = field(default_factory=list)
    env: list[EnvSetting] = field(default_factory=list)
    pr: int | None = None
    pr_url: str | None = None
    tool: dict[str, str] = field(default_factory=dict)
    submission: dict[str, Any] = field(default_factory=dict)  # submission.json, when the folder has one
    # The dynamic audit (audits/dynamic_result.py; its JSON is documented there and in
    # audits/schemas/result.schema.json): ledger summary, C1–C4 checks, probes, static/dynamic agreement.
    dynamic: DynamicResult | None = None

    @property
    def incomplete(self) -> bool:
        """Some file could not be audited: the verdict covers only the files that were."""
        return any(fr.error for fr in self.files)

    @property
    def findings(self) -> list[Finding]:
        return [f for fr in self.files for f in fr.findings]

    @property
    def errors(self) -> list[FileResult]:
        return [fr for fr in self.files if fr.error]

    @property
    def conditions(self) -> dict[Condition, Verdict]:
        return condition_verdicts(self.findings)

    @property
    def overall(self) -> Verdict:
        return overall_verdict(self.conditions)

    @property
    def dynamic_conditions(self) -> dict[Condition, Verdict]:
        """The conditions the dynamic audit judged (C1–C4, DATA, BYTES), each the worst of its checks and probes."""
        if self.dynamic is None:
            return {}
        return {Condition(c): v for c in CHECK_CONDITIONS if (v := self.dynamic.verdict_of(c)) is not None}

    @property
    def combined_conditions(self) -> dict[Condition, Verdict]:
        """Every condition's verdict from both audits (`combined`): what reports and exit codes rest on."""
        dyn = self.dynamic_conditions
        return {c: combined(v, dyn.get(c)) for c, v in self.conditions.items()}

    @property
    def combined_overall(self) -> Verdict:
        return combined(self.overall, self.dynamic.overall() if self.dynamic is not None else None)

    def to_dict(self, with_source: bool = False) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "target": self.target,
            "pr": self.pr,
            "pr_url": self.pr_url,
            "submission": self.submission,
            "env": [e.to_dict() for e in self.env],
            "verdict": {
                "overall": self.overall.value,
                "conditions": {c.value: v.value for c, v in self.conditions.items()},
                "incomplete": self.incomplete,
            },
            "summary": summary_counts(self.findings),
            "files": [fr.to_dict(with_source) for fr in self.files],
            "dynamic": self.dynamic.to_dict() if self.dynamic is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditResult":
        if str(d.get("schema_version", "")).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"unsupported result schema version {d.get('schema_version')!r}")
        return cls(
            target=d["target"],
            files=[FileResult.from_dict(f) for f in d.get("files", [])],
            env=[EnvSetting(**e) for e in d.get("env", [])],
            pr=d.get("pr"),
            pr_url=d.get("pr_url"),
            tool=d.get("tool", {}),
            submission=d.get("submission", {}),
            dynamic=DynamicResult.from_dict(d["dynamic"]) if d.get("dynamic") else None,
        )


def condition_verdicts(findings: list[Finding]) -> dict[Condition, Verdict]:
    """FAIL only from an active ERROR finding; WARN from an active WARNING; everything else PASS."""
    out = {c: Verdict.PASS for c in Condition}
    for f in findings:
        if f.status is not Status.ACTIVE:
            continue
        v = {Severity.ERROR: Verdict.FAIL, Severity.WARNING: Verdict.WARN}.get(f.severity)
        if v is None:
            continue
        for c in f.conditions:
            if v.rank > out[c].rank:
                out[c] = v
    return out


def overall_verdict(conditions: dict[Condition, Verdict]) -> Verdict:
    return max(conditions.values(), key=lambda v: v.rank, default=Verdict.PASS)


def summary_counts(findings: list[Finding]) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0, "inactive": 0, "suppressed": 0}
    for f in findings:
        if f.status is Status.ACTIVE:
            counts[f.severity.value] += 1
        else:
            counts[f.status.value] += 1
    return counts


def fingerprint(rule_id: str, path: str, snippet: str, occurrence: int) -> str:
    """Stable across line moves: rule, file and the normalized flagged text, not the line number."""
    norm = " ".join(snippet.split())
    return hashlib.sha256(f"{rule_id}\0{path}\0{norm}\0{occurrence}".encode()).hexdigest()[:32]
