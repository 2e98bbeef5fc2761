"""Terminal views: `concise` (one line per finding, Ruff-like) and `full` (excerpts, rulings, verdict table)."""
from __future__ import annotations

from audits.outputs import decoded_note
from audits.positions import split_lines
from audits.registry import rule_by_id
from audits.results import AuditResult, FileResult, Finding, summary_counts
from audits.types import Condition, Status, Verdict

CONTEXT_LINES = 2


def _loc(f: Finding) -> str:
    where = f.path if f.origin is None else f"{f.path}[decoded layer {f.origin.layer}]"
    return f"{where}:{f.line}:{f.column}"


def concise_line(f: Finding) -> str:
    line = f"{_loc(f)}: {f.rule_id} [{f.severity.value}] {f.message}"
    if f.origin is not None:
        line += f" (in {decoded_note(f)})"
    return line


def _error_line(fr: FileResult) -> str:
    return f"{fr.error} [{fr.error_kind}]"


def _label(result: AuditResult) -> str:
    label = result.target
    if result.pr is not None:
        label += f" (PR #{result.pr}" + (f" {result.pr_url})" if result.pr_url else ")")
    return label


def _verdict_brief(result: AuditResult) -> str:
    bad = [f"{c.value} {v.value}" for c, v in result.conditions.items() if v is not Verdict.PASS]
    brief = f"overall {result.overall.value}" + (f" ({', '.join(bad)})" if bad else "")
    n = len(result.errors)
    if n and n == len(result.files):
        return f"INCOMPLETE: {n} file{'s' if n != 1 else ''} not audited and nothing else to audit: no verdict"
    if n:
        return f"INCOMPLETE: {n} file{'s' if n != 1 else ''} not audited; the other {_files(len(result.files) - n)}: {brief}"
    return brief


def _files(k: int) -> str:
    return f"{k} file{'s' if k != 1 else ''}"


def _counts_text(findings: list[Finding]) -> str:
    c = summary_counts(findings)
    active = c["error"] + c["warning"] + c["info"]
    text = f"{active} finding{'s' if active != 1 else ''} ({c['error']} error, {c['warning']} warning, {c['info']} info)"
    extra = [f"{c[k]} {k}" for k in ("inactive", "suppressed") if c[k]]
    return text + (f"; not counted: {', '.join(extra)}" if extra else "")


def concise(results: list[AuditResult]) -> str:
    out: list[str] = []
    for result in results:
        for fr in result.files:
            if fr.error:
                out.append(_error_line(fr))
            for f in fr.findings:
                if f.status is Status.ACTIVE:
                    out.append(concise_line(f))
        unused = [s for fr in result.files for s in fr.suppressions if not s.used]
        for s in unused:
            out.append(f"{s.path}:{s.line}: unused suppression ignore[{', '.join(s.rule_ids)}]")
        out.append(f"{_label(result)}: {_counts_text(result.findings)} -> {_verdict_brief(result)}")
    return "\n".join(out) + "\n"


# --- full -------------------------------------------------------------------------------------------------


def _source_lines(fr: FileResult, f: Finding) -> list[str] | None:
    if f.origin is not None:
        layer = next((d for d in fr.decoded if d.layer == f.origin.layer), None)
        return split_lines(layer.text) if layer else None
    return split_lines(fr.source) if fr.source is not None else None


def _excerpt(lines: list[str] | None, f: Finding, related: list[int]) -> list[str]:
    if not lines:
        return [f"    | {f.snippet}"] if f.snippet else []
    wanted = set(range(max(1, f.line - CONTEXT_LINES), min(len(lines), f.line + CONTEXT_LINES) + 1))
    for ln in related:
        if 1 <= ln <= len(lines):
            wanted.add(ln)
    width = len(str(max(wanted))) if wanted else 1
    out = [f"{' ' * width} |"]
    prev = None
    for ln in sorted(wanted):
        if prev is not None and ln != prev + 1:
            out.append(f"{'.' * width} |")
        text = lines[ln - 1].rstrip().replace("\t", "    ")
        marker = ">" if ln in related and ln != f.line else " "
        out.append(f"{str(ln).rjust(width)} |{marker}{text}")
        if ln == f.line:
            raw = lines[ln - 1]
            col = max(1, f.column)
            end = f.end_column if f.end_line == f.line and f.end_column > col else len(raw.rstrip()) + 1
            lead = raw[: col - 1].replace("\t", "    ")
            span = max(1, end - col)
            out.append(f"{' ' * width} | {' ' * len(lead)}{'^' * span} {f.rule_id}")
        prev = ln
    out.append(f"{' ' * width} |")
    return out


def _finding_block(fr: FileResult, f: Finding) -> list[str]:
    head = f"{f.rule_id} [{f.severity.value}, {f.confidence.value} confidence] {f.rule_name}: {f.message}"
    out = [head, f"  --> {_loc(f)}"]
    if f.origin is not None:
        out.append(f"  note: this line is in {decoded_note(f)}; the file itself packs it")
    lines = _source_lines(fr, f)
    out.extend("  " + x for x in _excerpt(lines, f, [r.line for r in f.related]))
    for r in f.related:
        text = lines[r.line - 1].strip() if lines and 1 <= r.line <= len(lines) else ""
        out.append(f"  related: line {r.line}: {r.message}" + (f"   `{text}`" if text else ""))
    out.append(f"  conditions: {', '.join(c.value for c in f.conditions)}")
    rule = rule_by_id(f.rule_id)
    if rule is not None:
        rl = rule.ruling
        out.append(f"  ruling: {rl.status}: {rl.who} ({rl.where})")
        out.append(f'    "{rl.quote}"')
    if f.status is not Status.ACTIVE and f.status_reason:
        out.append(f"  {f.status.value}: {f.status_reason}")
    return out


def _verdict_table(result: AuditResult) -> list[str]:
    per: dict[Condition, list[str]] = {c: [] for c in Condition}
    for f in result.findings:
        if f.status is Status.ACTIVE:
            for c in f.conditions:
                per[c].append(f"{f.rule_id}@{f.path}:{f.line}")
    width = max(len(c.title) for c in Condition)
    out = [f"{'condition'.ljust(width)}  verdict  evidence", f"{'-' * width}  -------  --------"]
    for c, v in result.conditions.items():
        ev = per[c]
        shown = ", ".join(ev[:3]) + (f" (+{len(ev) - 3} more)" if len(ev) > 3 else "")
        out.append(f"{c.title.ljust(width)}  {v.value.ljust(7)}  {shown}".rstrip())
    out.append(f"{'overall'.ljust(width)}  {result.overall.value}")
    if result.errors:
        n = len(result.errors)
        out.append(f"INCOMPLETE: {n} file{'s' if n != 1 else ''} could not be audited; the verdict covers the rest only")
    return out


def full(results: list[AuditResult]) -> str:
    out: list[str] = []
    for result in results:
        out.append(f"=== scorefirst audit: {_label(result)} ===")
        if result.submission:
            keys = ("name", "author", "val_bpb", "track")
            bits = [f"{k}={result.submission[k]}" for k in keys if k in result.submission]
            out.append("submission.json: " + (", ".join(bits) if bits else f"{len(result.submission)} fields"))
        if result.env:
            out.append("environment: " + "; ".join(f"{e.key}={e.value} ({e.source})" for e in result.env))
        else:
            out.append("environment: defaults in the code (no --env, no run command found)")
        out.append("")
        groups = {s: [(fr, f) for fr in result.files for f in fr.findings if f.status is s] for s in Status}
        active = groups[Status.ACTIVE]
        if active:
            for fr, f in active:
                out.extend(_finding_block(fr, f))
                out.append("")
        else:
            out.append("No active findings.")
            out.append("")
        if groups[Status.INACTIVE]:
            out.append("Inactive findings (code that cannot run under the stated environment; not counted):")
            for _fr, f in groups[Status.INACTIVE]:
                out.append(f"  {concise_line(f)}")
                if f.status_reason:
                    out.append(f"      why inactive: {f.status_reason}")
            out.append("")
        if groups[Status.SUPPRESSED]:
            out.append("Suppressed findings (not counted):")
            for _fr, f in groups[Status.SUPPRESSED]:
                out.append(f"  {concise_line(f)}")
                if f.status_reason:
                    out.append(f"      {f.status_reason}")
            out.append("")
        sups = [s for fr in result.files for s in fr.suppressions]
        if sups:
            out.append("Suppressions:")
            for s in sups:
                state = "used" if s.used else "UNUSED (suppresses nothing)"
                reason = s.reason or "(no reason given: not honoured)"
                out.append(f"  {s.path}:{s.line}: ignore[{', '.join(s.rule_ids)}] {state} - {reason}")
            out.append("")
        if result.errors:
            out.append("Files not audited:")
            for fr in result.errors:
                out.append(f"  {_error_line(fr)}")
            out.append("")
        audited = [fr for fr in result.files if not fr.error]
        out.append(f"Audited {len(audited)} file{'s' if len(audited) != 1 else ''}, "
                   f"{sum(fr.lines for fr in audited)} lines: {_counts_text(result.findings)}")
        out.append("")
        out.extend(_verdict_table(result))
        out.append("")
    return "\n".join(out)
