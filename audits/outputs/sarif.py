"""SARIF 2.1.0 view, shaped for GitHub code scanning: one run for every audited target.

The run carries each rule descriptor once; relative paths resolve against the `SRCROOT` base in
`originalUriBaseIds` (the folder the command ran in, or the repository root for PRs read from git), and each
target's verdict and environment are listed under the run's `properties.targets`.

Columns are 1-based with an exclusive end (as `Finding` already stores them); `partialFingerprints` carry the
line-independent `Finding.fingerprint`, so an alert survives code moving; suppressed findings keep a
`suppressions[]` entry with the reason; inactive findings are notes with `properties.status = "inactive"`;
files that could not be audited are `toolExecutionNotifications` and make `executionSuccessful` false. Dynamic
checks and probes that did not pass (`audit --dynamic`) are results of rules `dynamic/<check id>` on the script,
their message the check's own (with what a C3/C4 leak is worth).
"""
from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from audits.outputs import decoded_note, file_line
from audits.outputs.ruledoc import help_uri, rule_markdown, rule_text
from audits.registry import all_rules, entry_by_id
from audits.results import AuditResult, Finding, fingerprint
from audits.rule import Rule
from audits.dynamic_result import Check
from audits.types import Confidence, Severity, Status, Verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/scorefirst/scorefirst"
FINGERPRINT_KEY = "scorefirst/v1"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_PRECISION = {Confidence.HIGH: "high", Confidence.MEDIUM: "medium", Confidence.LOW: "low"}
_PROBLEM = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "recommendation"}


SRCROOT = "SRCROOT"


def _location(path: str) -> dict[str, Any]:
    p = PurePosixPath(path)
    if p.is_absolute():
        return {"uri": p.as_uri()}
    return {"uri": str(p), "uriBaseId": SRCROOT}


def descriptor(rule: type[Rule]) -> dict[str, Any]:
    """The SARIF reportingDescriptor of a catalogue entry (a static rule or a spec)."""
    r = rule.ruling
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.message[:1024]},
        "fullDescription": {"text": rule.summary()},
        "help": {"text": rule_text(rule), "markdown": rule_markdown(rule)},
        "helpUri": help_uri(rule.id),
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "tags": ["parameter-golf", "compliance"] + [f"condition/{c.value}" for c in rule.conditions],
            "precision": _PRECISION[rule.confidence],
            "problem.severity": _PROBLEM[rule.severity],
            "conditions": [c.value for c in rule.conditions],
            "ruling": {"who": r.who, "where": r.where, "status": r.status},
        },
    }


def _adhoc_descriptor(f: Finding) -> dict[str, Any]:
    """A rule that is not registered here (a result read back from an older/newer version)."""
    return {
        "id": f.rule_id,
        "name": f.rule_name,
        "shortDescription": {"text": f.rule_name},
        "fullDescription": {"text": f.rule_name},
        "help": {"text": f"See {help_uri(f.rule_id)}"},
        "helpUri": help_uri(f.rule_id),
        "defaultConfiguration": {"level": _LEVEL[f.severity]},
        "properties": {"tags": ["parameter-golf", "compliance"], "precision": _PRECISION[f.confidence]},
    }


def _region(f: Finding) -> dict[str, Any]:
    if f.origin is not None:  # decoded code: point at the exec line of the real file
        return {"startLine": max(1, file_line(f))}
    start_col = max(1, f.column)
    end_line = max(f.line, f.end_line)
    end_col = max(1, f.end_column)
    if end_line == f.line:
        end_col = max(end_col, start_col)
    region: dict[str, Any] = {"startLine": max(1, f.line), "startColumn": start_col, "endLine": end_line,
                              "endColumn": end_col}
    if f.snippet:
        region["snippet"] = {"text": f.snippet}
    return region


def _result(f: Finding, index: int) -> dict[str, Any]:
    text = f.message
    if f.origin is not None:
        text = f"{text} (decoded line {f.line}, column {f.column}, in {decoded_note(f)})"
    level = _LEVEL[f.severity] if f.status is Status.ACTIVE else "note"
    res: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "level": level,
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": _location(f.path), "region": _region(f)}}],
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": {
            "severity": f.severity.value,
            "confidence": f.confidence.value,
            "conditions": [c.value for c in f.conditions],
            "status": f.status.value,
        },
    }
    if f.status is Status.INACTIVE:
        res["properties"]["inactive"] = True
        res["properties"]["inactiveReason"] = f.status_reason
    if f.status is Status.SUPPRESSED:
        reason = re.sub(r"^suppressed:\s*", "", f.status_reason) or "suppressed in source"
        res["suppressions"] = [{"kind": "inSource", "status": "accepted", "justification": reason}]
    if f.origin is not None:
        res["properties"]["decoded"] = {"layer": f.origin.layer, "codecs": list(f.origin.codecs),
                                        "line": f.line, "column": f.column, "execLine": f.origin.outer_line}
    if f.related:
        rel = []
        for i, r in enumerate(f.related, 1):
            loc: dict[str, Any] = {"id": i, "message": {"text": r.message}}
            if f.origin is None:
                loc["physicalLocation"] = {"artifactLocation": _location(f.path),
                                           "region": {"startLine": max(1, r.line)}}
            rel.append(loc)
        res["relatedLocations"] = rel
    return res


def _dynamic_descriptor(check_id: str, condition: str) -> dict[str, Any]:
    """The catalogue entry of a dynamic check or probe (audits/specs/dynamic.py), under the SARIF id
    `dynamic/<check id>` that keeps it apart from a static rule of the same name."""
    spec = entry_by_id(check_id)
    if spec is None:  # a result read back from another version
        return {"id": f"dynamic/{check_id}", "name": check_id,
                "shortDescription": {"text": f"dynamic audit check {check_id} ({condition})"},
                "help": {"text": f"See {help_uri(check_id)}"}, "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["parameter-golf", "compliance", "dynamic", f"condition/{condition}"]}}
    d = descriptor(spec)
    d["id"] = f"dynamic/{check_id}"
    d["properties"]["tags"].append("dynamic")
    return d


def _dynamic_results(result: AuditResult) -> list[tuple[str, str, dict[str, Any]]]:
    """(check id, condition, SARIF result) for each dynamic check or probe that did not pass, on the audited
    script: the check's message (a C3/C4 FAIL's ends with what the leak is worth) and its first violation."""
    dyn = result.dynamic
    if dyn is None:
        return []
    script = dyn.script or result.target
    leak = dyn.reconstructed.get("leak") or None
    sentence = (leak or {}).get("sentence")
    out = []
    for c in [*dyn.checks, *dyn.probes]:
        if c.verdict not in (Verdict.FAIL, Verdict.WARN):
            continue
        cid = c.id if isinstance(c, Check) else c.name
        text = c.message
        if sentence and c.verdict is Verdict.FAIL and c.condition in ("C3", "C4") and sentence not in text:
            text += "; " + sentence
        fv = c.first_violation.to_dict() if isinstance(c, Check) and c.first_violation is not None else None
        if fv:
            text += f". First violation: {fv['detail']}"
        out.append((cid, c.condition, {
            "level": "error" if c.verdict is Verdict.FAIL else "warning",
            "message": {"text": text},
            "locations": [{"physicalLocation": {"artifactLocation": _location(script),
                                                "region": {"startLine": 1}}}],
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint(f"dynamic/{cid}", script, c.condition, 0)},
            "properties": {"dynamic": True, "condition": c.condition, "verdict": c.verdict.value,
                           "firstViolation": fv, "leak": leak},
        }))
    return out


def _target_properties(result: AuditResult) -> dict[str, Any]:
    return {
        "target": result.target,
        "pr": result.pr,
        "prUrl": result.pr_url,
        "verdict": {"overall": result.overall.value, "incomplete": result.incomplete,
                    "conditions": {c.value: v.value for c, v in result.conditions.items()}},
        "env": [e.to_dict() for e in result.env],
    }


def run_for(results: AuditResult | list[AuditResult], root: str | None = None) -> dict[str, Any]:
    """One run over every target; `root` (a local folder) is where relative paths resolve."""
    if isinstance(results, AuditResult):
        results = [results]
    rules = list(all_rules())
    descriptors = [descriptor(r) for r in rules]
    index = {r.id: i for i, r in enumerate(rules)}
    out = []
    notifications = []
    for result in results:
        for f in result.findings:
            if f.rule_id not in index:
                index[f.rule_id] = len(descriptors)
                descriptors.append(_adhoc_descriptor(f))
            out.append(_result(f, index[f.rule_id]))
        for cid, condition, res in _dynamic_results(result):
            key = f"dynamic/{cid}"
            if key not in index:
                index[key] = len(descriptors)
                descriptors.append(_dynamic_descriptor(cid, condition))
            out.append({"ruleId": key, "ruleIndex": index[key], **res})
        for fr in result.errors:
            notifications.append({
                "level": "error",
                "message": {"text": fr.error},
                "locations": [{"physicalLocation": {"artifactLocation": _location(fr.path)}}],
                "properties": {"errorKind": fr.error_kind, "target": result.target},
            })
    tool = next((r.tool for r in results if r.tool), {})
    driver = {
        "name": "scorefirst",
        "version": tool.get("version", ""),
        "semanticVersion": tool.get("version", ""),
        "informationUri": INFORMATION_URI,
        "rules": descriptors,
    }
    invocation: dict[str, Any] = {"executionSuccessful": not notifications}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    base: dict[str, Any] = {"description": {"text": "the folder the audit ran in, or the repository root for "
                                                    "pull requests read from git"}}
    if root is not None:
        base["uri"] = Path(root).resolve().as_uri().rstrip("/") + "/"
    return {
        "tool": {"driver": driver},
        "automationDetails": {"id": "scorefirst/"},
        "originalUriBaseIds": {SRCROOT: base},
        "invocations": [invocation],
        "results": out,
        "properties": {"targets": [_target_properties(r) for r in results], "toolInfo": dict(tool)},
    }


def to_obj(results: list[AuditResult], root: str | None = None) -> dict[str, Any]:
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run_for(results, root)]}


def dumps(results: list[AuditResult], root: str | None = None) -> str:
    return json.dumps(to_obj(results, root), indent=2, ensure_ascii=False) + "\n"
