"""Views of a `GateResult`: terminal (concise, full), JSON, SARIF 2.1.0, GitHub annotations and Markdown.

The legality part reuses the audit's views: its SARIF run (`audits.outputs.sarif.run_for`) is the base of each
folder's run, and its annotation escaping (`audits.outputs.github.command`). Markdown is written for the job
summary page and for a PR comment: every value that comes from the submission is escaped, the text is capped
below GitHub's 65,536-character comment limit, and a hidden marker lets a bot update its earlier comment.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from harness.gate.model import CHECKS, FolderResult, GateResult, Message, Status, verdict_word

FORMATS = ("concise", "full", "json", "sarif", "github", "markdown")
COMMENT_MARKER = "<!-- scorefirst-gate -->"
MARKDOWN_LIMIT = 60_000
MAX_MESSAGES_PER_FOLDER = 40


def render(fmt: str, result: GateResult) -> str:
    if fmt == "concise":
        return terminal(result, full=False)
    if fmt == "full":
        return terminal(result, full=True)
    if fmt == "json":
        return json.dumps(json_safe(result.to_dict()), indent=2, ensure_ascii=False, allow_nan=False,
                          default=str) + "\n"
    if fmt == "sarif":
        return json.dumps(json_safe(sarif(result)), indent=2, ensure_ascii=False) + "\n"
    if fmt == "github":
        return annotations(result)
    if fmt == "markdown":
        return markdown(result)
    raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def json_safe(obj: Any) -> Any:
    """NaN and infinities (a t statistic on identical seeds, a p-value of one seed) become null: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# --- terminal ---------------------------------------------------------------------------------------------


def _ordered(fr: FolderResult) -> list[tuple[str, Message]]:
    rank = {"error": 0, "warning": 1, "note": 2}
    items = [(name, m) for name in CHECKS if name in fr.checks for m in fr.checks[name].messages]
    return sorted(items, key=lambda t: (rank[t[1].level], CHECKS.index(t[0])))


def terminal(result: GateResult, full: bool) -> str:
    out: list[str] = []
    if result.error:
        out.append(f"gate error: {result.error}")
        return "\n".join(out) + "\n"
    if result.merged_by:
        out.append(f"scorefirst gate: {result.head} is in {result.base}, merged by {result.merged_by[:12]}: "
                   f"its changes against its first parent ({result.merge_base[:12]}..{result.merged_by[:12]})")
    else:
        span = f"{result.merge_base[:12]}..{result.head_commit[:12]}"
        out.append(f"scorefirst gate: {result.head} against {result.base} (merge base; {span})")
    if not result.folders:
        out.append("no submission folder added or modified under records/")
    for fr in result.folders:
        out.append("")
        out.append(f"{fr.folder} ({fr.change}): {verdict_word(fr.status).upper()}")
        for name in CHECKS:
            c = fr.checks.get(name)
            if c is not None:
                out.append(f"  {name:<13} {c.status.value:<5} {c.summary}")
        for _name, m in _ordered(fr):
            if m.level == "note" and not full:
                continue
            out.append(f"  {m.location}: {m.rule} [{m.level}] {m.text}")
        if full and fr.seeds:
            out.append("  per seed:")
            out.append(f"    {'seed':>6} {'steps':>6} {'train s':>8} {'eval s':>7} {'val_loss':>10} {'val_bpb':>10} "
                       f"{'artifact B':>11}  stage")
            for r in fr.seeds:
                out.append(f"    {_s(r['seed']):>6} {_s(r['steps']):>6} {_f(r['train_s'], 1):>8} "
                           f"{_f(r['eval_s'], 1):>7} {_f(r['val_loss'], 5):>10} {_f(r['val_bpb'], 5):>10} "
                           f"{_i(r['artifact_bytes']):>11}  {r['stage'] or '-'}")
        if full:
            comp = fr.checks.get("significance")
            if comp is not None and comp.data.get("comparison"):
                cmp_ = comp.data["comparison"]
                values = ", ".join(f"{x:.5f}" for x in cmp_["record"]["val_bpb"])
                out.append(f"  record: {cmp_['record']['name']} val_bpb {values}")
    return "\n".join(out) + "\n"


def _s(v: Any) -> str:
    return "-" if v is None else str(v)


def _f(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _i(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


# --- GitHub annotations -----------------------------------------------------------------------------------


def annotations(result: GateResult) -> str:
    """Workflow commands, capped as GitHub caps them (10 per level and step), one per rule and file."""
    from audits.outputs.github import command

    cap = {"error": 10, "warning": 10, "notice": 9}
    lines: list[str] = []
    used = {k: 0 for k in cap}
    dropped = 0
    if result.error:
        return command("error", result.error, title="scorefirst gate: could not run") + "\n"
    groups: dict[tuple[str, str, str], list[tuple[str, Message]]] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for fr in result.folders:
        for name, m in _ordered(fr):
            ident = (m.level, m.rule, m.path, m.key or m.text)
            if m.level == "note" or ident in seen:
                continue  # the same problem seen from another folder (a file outside both) is shown once
            seen.add(ident)
            # files changed outside the folder are one problem: one annotation, however many files
            where = "\0outside" if m.key.startswith("outside:") else m.path
            groups.setdefault((m.level, m.rule, where), []).append((name, m))
    ordered = sorted(groups.items(), key=lambda kv: 0 if kv[0][0] == "error" else 1)
    for (level, rule, where), items in ordered:
        name, m = items[0]
        path = m.path
        if len(items) > 1:
            what = "files changed outside the submission folder" if where == "\0outside" else "like this in this file"
            text = f"{m.text} (+{len(items) - 1} more {what})"
        else:
            text = m.text
        if used[level] >= cap[level]:
            dropped += len(items)
            continue
        used[level] += 1
        props: dict[str, Any] = {"file": path}
        if m.line:
            props["line"] = m.line
            if m.column:
                props["col"] = m.column
        lines.append(command(level, text, **props, title=f"{rule} ({name})"))
    for fr in result.folders:
        if used["notice"] >= cap["notice"]:
            break
        used["notice"] += 1
        brief = ", ".join(f"{n} {c.status.value}" for n, c in fr.checks.items())
        lines.append(command("notice", f"{fr.folder}: {verdict_word(fr.status)} ({brief})", title="scorefirst gate"))
    if dropped:
        lines.append(command("notice", f"{dropped} more problem{'s' if dropped != 1 else ''} not shown as annotations "
                                       "(GitHub shows at most 10 per level and step); see the job summary or the "
                                       "JSON/SARIF report", title="scorefirst gate"))
    return "\n".join(lines) + ("\n" if lines else "")


# --- SARIF ------------------------------------------------------------------------------------------------

_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._/-]+", "-", text).strip("-/") or "target"


def _run(fr: FolderResult | None, result: GateResult) -> dict[str, Any]:
    from audits.outputs.sarif import descriptor, run_for
    from audits.registry import entry_by_id
    from audits.results import AuditResult

    audit = fr.audit if fr is not None and fr.audit is not None else \
        AuditResult(target=fr.folder if fr else "gate", tool=dict(result.tool))
    run = run_for(audit)
    rules = run["tool"]["driver"]["rules"]
    index = {r["id"]: i for i, r in enumerate(rules)}
    if fr is not None:
        for name in CHECKS:
            c = fr.checks.get(name)
            if c is None:
                continue
            for m in c.messages:
                if name == "legality" and m.rule != "PG-AUDIT":
                    continue  # the audit's own findings are already in the run
                if m.rule not in index:
                    index[m.rule] = len(rules)
                    rules.append(descriptor(entry_by_id(m.rule)))
                loc: dict[str, Any] = {"artifactLocation": {"uri": m.path}}
                if m.line:
                    loc["region"] = {"startLine": m.line, **({"startColumn": m.column} if m.column else {})}
                run["results"].append({
                    "ruleId": m.rule, "ruleIndex": index[m.rule], "level": _LEVEL[m.level],
                    "message": {"text": m.text}, "locations": [{"physicalLocation": loc}],
                    "partialFingerprints": {"scorefirst-gate/v1": m.fingerprint()},
                    "properties": {"check": name},
                })
        run["automationDetails"] = {"id": f"scorefirst-gate/{_slug(fr.folder)}/"}
        run["properties"]["gate"] = {"folder": fr.folder, "track": fr.track, "change": fr.change,
                                     "verdict": verdict_word(fr.status),
                                     "checks": {n: c.status.value for n, c in fr.checks.items()}}
    else:
        run["automationDetails"] = {"id": "scorefirst-gate/none/"}
        run["properties"]["gate"] = {"verdict": verdict_word(result.status), "reason": result.reason()}
    if result.error:
        inv = run["invocations"][0]
        inv["executionSuccessful"] = False
        inv.setdefault("toolExecutionNotifications", []).append({"level": "error", "message": {"text": result.error}})
    return run


def sarif(result: GateResult) -> dict[str, Any]:
    from audits.outputs.sarif import SARIF_SCHEMA, SARIF_VERSION

    runs = [_run(fr, result) for fr in result.folders] or [_run(None, result)]
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": runs}


# --- Markdown ---------------------------------------------------------------------------------------------

_ICON = {Status.PASS: "✅", Status.SKIP: "➖", Status.WARN: "⚠️", Status.FAIL: "❌", Status.ERROR: "💥"}
_HEAD = {Status.PASS: "passed", Status.SKIP: "passed", Status.WARN: "passed with warnings", Status.FAIL: "blocked",
         Status.ERROR: "could not judge"}


def md(text: Any) -> str:
    """Escape text from a submission for Markdown: no HTML, no tables broken by |, no @mentions, one line."""
    s = html.escape(str(text), quote=False)
    s = re.sub(r"([\\`*_\[\]|~#])", r"\\\1", s)
    s = s.replace("@", "&#64;")
    return " ".join(s.split())


def markdown(result: GateResult) -> str:
    out = [COMMENT_MARKER]
    st = result.status
    out.append(f"## {_ICON[st]} scorefirst gate: {_HEAD[st]}")
    out.append("")
    if result.error:
        out.append(f"The gate could not run: {md(result.error)}")
        return "\n".join(out) + "\n"
    if result.merged_by:
        out.append(f"`{result.head_commit[:12]}` is already in {md(result.base)}: compared its merge commit "
                   f"`{result.merged_by[:12]}` with that commit's first parent `{result.merge_base[:12]}`.")
    else:
        out.append(f"Compared `{result.head_commit[:12]}` with its merge base `{result.merge_base[:12]}` on "
                   f"{md(result.base)}.")
    if not result.folders:
        out.append("")
        out.append("No submission folder is added or modified under `records/`: nothing to gate.")
    for fr in result.folders:
        out.extend(_folder_md(fr))
    out.append("")
    out.append(f"<sub>exit {result.exit_code()}: {md(result.reason())} · scorefirst "
               f"{md(result.tool.get('version', ''))}</sub>")
    text = "\n".join(out) + "\n"
    if len(text) > MARKDOWN_LIMIT:
        cut = text[:MARKDOWN_LIMIT].rsplit("\n", 1)[0]
        text = cut + "\n\n… (truncated; the full report is in the JSON/SARIF artifact)\n"
    return text


def _folder_md(fr: FolderResult) -> list[str]:
    out = ["", f"### {_ICON[fr.status]} {md(fr.folder)} — {_HEAD[fr.status]}", ""]
    out.append(f"{'New folder' if fr.change == 'added' else 'Modified folder'} on {md(fr.track)}.")
    out.append("")
    out.append("| check | verdict | summary |")
    out.append("|---|---|---|")
    for name in CHECKS:
        c = fr.checks.get(name)
        if c is not None:
            out.append(f"| {name} | {_ICON[c.status]} {c.status.value} | {md(c.summary)} |")
    if fr.seeds:
        out.append("")
        out.append("| seed | steps | train s | eval s | val_loss | val_bpb | artifact bytes | reported stage |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in fr.seeds:
            out.append(f"| {md(_s(r['seed']))} | {_s(r['steps'])} | {_f(r['train_s'], 1)} | {_f(r['eval_s'], 1)} | "
                       f"{_f(r['val_loss'], 5)} | {_f(r['val_bpb'], 5)} | {_i(r['artifact_bytes'])} | "
                       f"{md(r['stage'] or '-')} |")
    sig = fr.checks.get("significance")
    if sig is not None and sig.data.get("comparison"):
        cmp_ = sig.data["comparison"]
        out.append("")
        rec = cmp_["record"]
        out.append(f"Record: {md(rec['name'])} ({md(rec['source'])}), val_bpb "
                   f"{', '.join(f'{x:.5f}' for x in rec['val_bpb'])}; blocking policy: {md(cmp_['blocking'])}.")
        out.append("")
        out.append("| policy | t | df | p | result |")
        out.append("|---|---:|---:|---:|---|")
        for key in ("readme", "welch"):
            r = cmp_[key]
            out.append(f"| {md(cmp_['labels'][key])} | {_g(r.get('t'))} | {_g(r.get('df'))} | {_g(r.get('p'), 4)} | "
                       f"{'met' if r.get('passed') else 'not met'} |")
    items = [(n, m) for n, m in _ordered(fr)]
    if items:
        shown = items[:MAX_MESSAGES_PER_FOLDER]
        errors = sum(1 for _, m in items if m.level == "error")
        warnings = sum(1 for _, m in items if m.level == "warning")
        out.append("")
        out.append(f"<details{' open' if errors else ''}><summary>{errors} blocking, {warnings} to review, "
                   f"{len(items) - errors - warnings} notes</summary>")
        out.append("")
        for name, m in shown:
            mark = {"error": "❌", "warning": "⚠️", "note": "ℹ️"}[m.level]
            out.append(f"- {mark} `{_code(m.location)}` **{md(m.rule)}** ({name}): {md(m.text)}")
        if len(items) > len(shown):
            out.append(f"- … {len(items) - len(shown)} more in the JSON/SARIF report")
        out.append("")
        out.append("</details>")
    return out


def _code(text: str) -> str:
    """Text for an inline code span: backticks cannot close it early."""
    return " ".join(text.replace("`", "'").split())


def _g(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)
