"""Audit one pull request of a sweep, in a worker process: resolve, extract, audit, fingerprint.

The result is a plain dict (a `PRRecord` in the sweep JSON, less what only the sweep as a whole knows: clusters
and lineage), so it pickles cheaply back to the parent and is stored as-is in the resume journal.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from audits.api import Target, audit_targets, pr_url_for
from audits.cache import Cache
from audits.gitpr import Branch, extract_folder, resolve_change
from core.git import BlobReader, GitError
from audits.results import AuditResult, FileResult
from audits.types import Severity, Status
from harness.sweep import fingerprints as fp

CLUSTERED_SEVERITIES = (Severity.ERROR, Severity.WARNING)


def audit_input(path: str) -> bool:
    """The files the static audit reads: Python, run commands (README*, *.sh) and submission.json.

    Model artifacts and logs (megabytes each, thousands of them) are left in git."""
    name = PurePosixPath(path).name
    return name.endswith((".py", ".sh")) or name == "submission.json" or name.lower().startswith("readme")


@dataclass
class Context:
    repo: Path
    branch: Branch
    cache: Cache | None


_CTX: Context | None = None
_BLOBS: BlobReader | None = None


def init(ctx: Context) -> None:
    """Set the sweep's context in this process (the pool initializer; the parent too, when it audits itself)."""
    global _CTX, _BLOBS
    _CTX = ctx
    _BLOBS = None


def _blobs() -> BlobReader:
    global _BLOBS
    assert _CTX is not None
    if _BLOBS is None:
        _BLOBS = BlobReader(_CTX.repo)
    return _BLOBS


def audit_pr(number: int, head: str) -> dict[str, Any]:
    """Everything the sweep keeps about PR `number` at `head`; never raises for a problem of this one PR."""
    assert _CTX is not None, "init() first"
    clock = _Clock()
    record: dict[str, Any] = {"number": number, "head": head, "status": "audited", "error": None,
                              "merged": False, "base": None, "commit": None, "folders": [], "results": [],
                              "violations": [], "functions": []}
    try:
        change = resolve_change(_CTX.repo, number, head, _CTX.branch)
    except GitError as e:
        record.update(status="error", error=str(e))
        return record
    clock.lap("resolve")
    record.update(merged=change.merged, base=change.base, commit=change.commit, folders=change.folders)
    if not change.folders:
        record["status"] = "no-records"
        record["timing"] = clock.laps
        return record
    with tempfile.TemporaryDirectory(prefix=f"scorefirst-sweep-{number}-") as tmp:
        root = Path(tmp)
        targets, missing = [], {}
        try:
            for folder in change.folders:
                missing[folder] = extract_folder(_CTX.repo, change.commit, folder, root, _blobs(), keep=audit_input)
                targets.append(Target(folder, [root.joinpath(*PurePosixPath(folder).parts)], display_root=root,
                                      pr=number, pr_url=pr_url_for(number)))
        except GitError as e:
            record.update(status="error", error=str(e))
            return record
        clock.lap("extract")
        results = audit_targets(targets, jobs=1, cache_dir=_CTX.cache)
        clock.lap("audit")
    for result in results:
        for path in missing.get(result.target, []):
            result.files.append(FileResult(path=path, error=f"{path}: the clone lacks this file's content",
                                           error_kind="git-missing"))
    parsed: dict[str, fp.ParsedCode] = {}  # each text parsed once for its findings and its functions
    record["violations"] = violations(results, parsed)
    record["functions"] = sorted({h for r in results for fr in r.files for h in _file_functions(fr, parsed)})
    clock.lap("fingerprint")
    record["results"] = [r.to_dict() for r in results]
    record.update(summarize(results))
    record["timing"] = clock.laps
    return record


class _Clock:
    """Seconds per stage of one PR (the benchmark reports where a sweep's time goes)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 4)
        self._t = now


def summarize(results: list[AuditResult]) -> dict[str, Any]:
    """The PR's line in the triage table: worst verdict, the rules that decide it, the claimed bpb."""
    verdict = max((r.overall for r in results), key=lambda v: v.rank).value if results else "PASS"
    ruled: dict[str, int] = {}
    for r in results:
        for f in r.findings:
            if f.status is Status.ACTIVE and f.severity in CLUSTERED_SEVERITIES:
                ruled[f.rule_id] = max(ruled.get(f.rule_id, 0), f.severity.rank)
    claimed = [r.submission.get("val_bpb") for r in results if isinstance(r.submission, dict)]
    claimed = [float(c) for c in claimed if isinstance(c, (int, float)) and not isinstance(c, bool) and c == c
               and c not in (float("inf"), float("-inf"))]
    return {"verdict": verdict,
            "rules": sorted(ruled, key=lambda rid: (-ruled[rid], rid)),
            "incomplete": any(r.incomplete for r in results),
            "claimed_bpb": min(claimed) if claimed else None}


_FUNCTIONS_MEMO: dict[str, list[str]] = {}  # text hash -> its function fingerprints (forks repeat files)
_MEMO_MAX = 4096


def _texts(fr: FileResult) -> list[str]:
    return ([fr.source] if fr.source else []) + [d.text for d in fr.decoded]


def _parsed(text: str, parsed: dict[str, fp.ParsedCode]) -> fp.ParsedCode:
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if key not in parsed:
        parsed[key] = fp.ParsedCode(text)
    return parsed[key]


def _file_functions(fr: FileResult, parsed: dict[str, fp.ParsedCode]) -> list[str]:
    out = []
    for text in _texts(fr):
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        hit = _FUNCTIONS_MEMO.get(key)
        if hit is None:
            hit = _parsed(text, parsed).function_fingerprints()
            if len(_FUNCTIONS_MEMO) >= _MEMO_MAX:
                _FUNCTIONS_MEMO.clear()
            _FUNCTIONS_MEMO[key] = hit
        out.extend(hit)
    return out


def violations(results: list[AuditResult], parsed: dict[str, fp.ParsedCode] | None = None) -> list[dict[str, Any]]:
    """One entry per active error or warning: its cluster key (rule + normalized code) and where it is."""
    parsed = {} if parsed is None else parsed
    out = []
    for result in results:
        for fr in result.files:
            for f in fr.findings:
                if f.status is not Status.ACTIVE or f.severity not in CLUSTERED_SEVERITIES:
                    continue
                layer = f.origin.layer if f.origin is not None else 0
                text = fr.source if layer == 0 else next((d.text for d in fr.decoded if d.layer == layer), None)
                found = _parsed(text or "", parsed).enclosing(f.line)
                code, where = found if found else (fp.snippet_fingerprint(f.snippet), "")
                out.append({"key": fp.violation_key(f.rule_id, code), "rule_id": f.rule_id, "function": where,
                            "target": result.target, "path": f.path, "line": f.line, "decoded_layer": layer or None,
                            "severity": f.severity.value, "message": f.message, "snippet": f.snippet})
    return out
