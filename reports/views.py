"""View models: plain dicts with everything a template prints already decided, formatted and made safe.

Templates only lay out what is here. Data from a submission (paths, messages, snippets, submission.json values,
the dynamic section) stays plain `str` and is escaped by jinja2; only highlighted source (escaped token by token
in `reports.highlight`) is `Markup`. Links to the outside are kept only when they are http(s) URLs.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import textwrap
from typing import Any

from audits.results import AuditResult, Finding, FileResult
from audits.outputs.ruledoc import KIND_TITLES
from audits.rule import SECTIONS, Rule
from audits.types import AUDIT_VERDICTS, CONDITION_TITLES, Condition, Status, Verdict
from core.competition import ARTIFACT_LIMIT, EVAL_LIMIT_S, TRAIN_LIMIT_S, pr_url_for
from reports import svg
from reports.highlight import highlight_lines, split_lines, visible
from reports.inputs import ReferenceRun, finite

CONDITIONS = [c.value for c in Condition]
SHORT_TITLES = {c.value: t for c, t in CONDITION_TITLES.items()}
VERDICTS = tuple(v.value for v in AUDIT_VERDICTS)
# Official training loops check the wall clock after each step, so training overshoots its limit by up to a step.
# The gate allows the log's own step time; a time claimed in submission.json has none, so this much is allowed.
TIME_SLACK_S = 1.0
MAX_MARKED_SPAN = 200
LONG_LINE_HTML = 4000  # longer lines scroll inside a capped box instead of filling the screen

_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`]+$")


# --- small formatting helpers -----------------------------------------------------------------------------------


def safe_url(url: Any) -> str | None:
    return url if isinstance(url, str) and _SAFE_URL.match(url) else None


def vclass(v: Any) -> str:
    return {"PASS": "pass", "WARN": "warn", "FAIL": "fail"}.get(v, "none") if isinstance(v, str) else "none"


def fnum(x: Any, digits: int = 5) -> str:
    v = finite(x)
    return "—" if v is None else f"{v:.{digits}f}"


def fint(x: Any) -> str:
    v = finite(x)
    return "—" if v is None else f"{int(v):,}"


def fsec(x: Any) -> str:
    v = finite(x)
    return "—" if v is None else f"{v:.1f} s"


def sort_num(x: Any) -> str:
    """A `data-sort` value: the number, or empty (sorted last) when unknown."""
    v = finite(x)
    return "" if v is None else repr(v)


def scalar_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def slugify(text: str, limit: int = 48) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "x"


def short_hash(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()[:8]


def rule_page(rule: type[Rule]) -> str:
    return f"rule-{rule.slug()}.html"


def ruling_view(rule: type[Rule] | None) -> dict[str, str] | None:
    if rule is None:
        return None
    r = rule.ruling
    return {"who": r.who, "where": r.where, "quote": r.quote, "status": r.status}


# --- submissions --------------------------------------------------------------------------------------------------


class _Anchors:
    """Anchor ids on a submission page: `L12` in the main file, `f2-L12` in others, `d1-L5` in decoded layers."""

    def __init__(self, files: list[FileResult]):
        self.prefix: dict[str, str] = {}
        self.has_source: dict[str, bool] = {}
        self.layers: dict[str, set[int]] = {}
        self.count: dict[tuple[str, int | None], int] = {}  # lines shown per (file, decoded layer)
        shown = [fr for fr in files if not fr.error]
        main = next((fr for fr in shown if fr.path.rsplit("/", 1)[-1] == "train_gpt.py"), shown[0] if shown else None)
        for k, fr in enumerate(files, 1):
            if fr.path in self.prefix:
                continue
            self.prefix[fr.path] = "" if fr is main else f"f{k}-"
            self.has_source[fr.path] = fr.source is not None
            self.layers[fr.path] = {d.layer for d in fr.decoded}
            if fr.source is not None:
                self.count[(fr.path, None)] = len(split_lines(fr.source))
            for d in fr.decoded:
                self.count.setdefault((fr.path, d.layer), len(split_lines(d.text)))

    def line(self, path: str, line: int, layer: int | None = None) -> str | None:
        """The anchor of a shown line, or None when that line is not on the page."""
        p = self.prefix.get(path, "")
        if layer is not None and layer in self.layers.get(path, set()):  # decoded text is always stored
            return f"{p}d{layer}-L{line}" if 1 <= line <= self.count.get((path, layer), 0) else None
        if not self.has_source.get(path):
            return None
        return f"{p}L{line}" if 1 <= line <= self.count.get((path, None), 0) else None

    def of(self, f: Finding) -> str | None:
        if f.origin is not None:
            if f.origin.layer in self.layers.get(f.path, set()):
                return self.line(f.path, f.line, f.origin.layer)
            return self.line(f.path, f.origin.outer_line)
        return self.line(f.path, f.line)


def _finding_view(f: Finding, n: int, anchors: _Anchors, rules: dict[str, type[Rule]]) -> dict[str, Any]:
    rule = rules.get(f.rule_id)
    anchor = anchors.of(f)
    layer = f.origin.layer if f.origin is not None else None
    where = f"{f.path}:{f.line}:{f.column}"
    decoded = None
    if f.origin is not None:
        codecs = " → ".join(f.origin.codecs)
        where = f"{f.path} · decoded layer {f.origin.layer}, line {f.line}:{f.column}"
        decoded = {"layer": f.origin.layer, "codecs": codecs, "outer_line": f.origin.outer_line,
                   "outer_href": _href(anchors.line(f.path, f.origin.outer_line))}
    return {
        "id": f"finding-{n}",
        "rule_id": f.rule_id,
        "rule_name": f.rule_name,
        "rule_href": rule_page(rule) if rule else None,
        "conditions": [c.value for c in f.conditions],
        "primary": f.conditions[0].value if f.conditions else "other",
        "also": [c.value for c in f.conditions[1:]],
        "severity": f.severity.value,
        "confidence": f.confidence.value,
        "message": f.message,
        "path": f.path,
        "line": f.line,
        "where": where,
        "href": _href(anchor),
        "anchor": anchor,
        "snippet": visible(f.snippet),
        "status": f.status.value,
        "status_reason": f.status_reason,
        "related": [{"line": r.line, "message": r.message, "href": _href(anchors.line(f.path, r.line, layer))}
                    for r in f.related],
        "decoded": decoded,
        "ruling": ruling_view(rule),
        "fingerprint": f.fingerprint,
    }


def _href(anchor: str | None) -> str | None:
    return f"#{anchor}" if anchor else None


def _note(cls: str, label: str, text: str, href: str | None) -> dict[str, Any]:
    return {"cls": cls, "label": label, "text": text, "href": href}


def _mark(marks: dict[tuple[str, int | None, int], dict[str, Any]], key: tuple[str, int | None, int],
          cls: str, note: dict[str, Any] | None, rank: int) -> None:
    m = marks.setdefault(key, {"cls": "", "rank": -1, "notes": []})
    if rank > m["rank"]:
        m["cls"], m["rank"] = cls, rank
    if note is not None:
        m["notes"].append(note)


_SEV_RANK = {"info": 3, "warning": 4, "error": 5}


def _line_marks(views: list[dict[str, Any]], findings: list[Finding], result: AuditResult,
                anchors: _Anchors) -> dict[tuple[str, int | None, int], dict[str, Any]]:
    """(path, layer or None, line) -> the line's class and the notes printed under it."""
    marks: dict[tuple[str, int | None, int], dict[str, Any]] = {}
    for v, f in zip(views, findings):
        layer = f.origin.layer if f.origin is not None and f.origin.layer in anchors.layers.get(f.path, set()) else None
        if f.status is Status.ACTIVE:
            cls, rank, label = f"flag sev-{f.severity.value}", _SEV_RANK[f.severity.value], f"{f.rule_id} · {f.severity.value}"
        elif f.status is Status.SUPPRESSED:
            cls, rank, label = "flag st-suppressed", 2, f"{f.rule_id} · suppressed"
        else:
            cls, rank, label = "flag st-inactive", 1, f"{f.rule_id} · inactive"
        end = f.end_line if f.end_line >= f.line else f.line
        for ln in range(f.line, min(end, f.line + MAX_MARKED_SPAN) + 1):
            note = _note(cls, label, f.message, "#" + v["id"]) if ln == f.line else None
            _mark(marks, (f.path, layer, ln), cls, note, rank)
        for r in f.related:
            _mark(marks, (f.path, layer, r.line), "rel",
                  _note("rel", f"related to {f.rule_id}", r.message, "#" + v["id"]), 0)
        if f.origin is not None:
            _mark(marks, (f.path, None, f.origin.outer_line), cls,
                  _note(cls, label, f"in decoded layer {f.origin.layer}, line {f.line}: {f.message}", "#" + v["id"]),
                  rank)
    for fr in result.files:
        for s in fr.suppressions:
            ids = ", ".join(s.rule_ids)
            text = f"ignore[{ids}] {s.reason}".strip() + ("" if s.used else " (suppresses nothing)")
            _mark(marks, (s.path, None, s.line), "sup", _note("sup", "suppression", text, "#suppressions"), 0)
    return marks


def _source_lines(text: str, path: str, layer: int | None, prefix: str,
                  marks: dict[tuple[str, int | None, int], dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n, html in enumerate(highlight_lines(text), 1):
        m = marks.get((path, layer, n))
        ident = f"{prefix}d{layer}-L{n}" if layer is not None else f"{prefix}L{n}"
        out.append({"n": n, "id": ident, "html": html, "cls": m["cls"] if m else "", "notes": m["notes"] if m else [],
                    "long": len(html) > LONG_LINE_HTML})
    return out


def _file_view(fr: FileResult, anchors: _Anchors, marks) -> dict[str, Any]:
    prefix = anchors.prefix.get(fr.path, "")
    lines = _source_lines(fr.source, fr.path, None, prefix, marks) if fr.source is not None else []
    layers = []
    for d in fr.decoded:
        layers.append({
            "layer": d.layer, "id": f"{prefix}d{d.layer}", "outer_line": d.outer_line,
            "outer_href": _href(anchors.line(fr.path, d.outer_line)),
            "codecs": " → ".join(d.codecs),
            "count": len(split_lines(d.text)),
            "lines": _source_lines(d.text, fr.path, d.layer, prefix, marks),
        })
    active = [f for f in fr.findings if f.status is Status.ACTIVE]
    return {
        "path": fr.path, "id": f"{prefix}file" if prefix else "file-main", "sha256": fr.sha256, "lines_count": fr.lines,
        "error": fr.error, "error_kind": fr.error_kind, "has_source": fr.source is not None, "lines": lines,
        "decoded": layers, "active": len(active),
    }


def _budgets(result: AuditResult, logs: dict[str, Any] | None) -> dict[str, Any]:
    """Train/eval seconds: the gate's reading of the folder's train logs, else what submission.json claims.

    The logs come first because they are what the gate judges, over-limit marks included; a claim is shown only
    when there are no logs to check it against.
    """
    if logs:
        n = logs.get("logs", 0)
        return _times(finite(logs.get("train_seconds")), finite(logs.get("eval_seconds")),
                      bool(logs.get("train_over")), bool(logs.get("eval_over")),
                      f"slowest of {n} train log{'s' if n != 1 else ''}, as the gate reads them")
    sub = result.submission if isinstance(result.submission, dict) else {}
    train = next((finite(sub.get(k)) for k in ("train_time_s", "train_seconds", "train_time_seconds")
                  if finite(sub.get(k)) is not None), None)
    evals = next((finite(sub.get(k)) for k in ("eval_time_s", "eval_seconds", "eval_time_seconds")
                  if finite(sub.get(k)) is not None), None)
    source = "submission.json" if train is not None or evals is not None else "not recorded"
    return _times(train, evals, train is not None and train > TRAIN_LIMIT_S + TIME_SLACK_S,
                  evals is not None and evals > EVAL_LIMIT_S, source)


def _times(train: float | None, evals: float | None, train_over: bool, eval_over: bool, source: str) -> dict[str, Any]:
    return {"train": fsec(train), "eval": fsec(evals), "train_sort": sort_num(train), "eval_sort": sort_num(evals),
            "train_over": train_over, "eval_over": eval_over, "source": source}


def submission_view(result: AuditResult, page: str, rules: dict[str, type[Rule]],
                    logs: dict[str, Any] | None = None) -> dict[str, Any]:
    sub = result.submission if isinstance(result.submission, dict) else {}
    static = {c.value: v.value for c, v in result.conditions.items()}
    dconds = {c.value: v.value for c, v in result.dynamic_conditions.items()}
    combined = {c.value: v.value for c, v in result.combined_conditions.items()}
    conds = []
    for c in CONDITIONS:
        s, d = static.get(c), dconds.get(c)
        comb = combined.get(c) or Verdict.PASS.value
        n_active = sum(1 for f in result.findings if f.status is Status.ACTIVE and f.conditions
                       and any(x.value == c for x in f.conditions))
        title = f"{SHORT_TITLES[c]}: static {s or '—'}" + (f", dynamic {d}" if d else "")
        conds.append({"cond": c, "title": SHORT_TITLES[c], "static": s, "dynamic": d, "verdict": comb,
                      "vcls": vclass(comb), "svcls": vclass(s), "dvcls": vclass(d), "findings": n_active,
                      "tip": title, "from_dynamic": d is not None and comb != s})
    d_overall = result.dynamic.overall().value if result.dynamic is not None else None
    overall = result.combined_overall.value

    anchors = _Anchors(result.files)
    active = [f for f in result.findings if f.status is Status.ACTIVE]
    order = {c: i for i, c in enumerate(CONDITIONS)}
    sev_order = {"error": 0, "warning": 1, "info": 2}
    active.sort(key=lambda f: (order.get(f.conditions[0].value if f.conditions else "", 99),
                               sev_order[f.severity.value], f.path, f.line, f.column, f.rule_id))
    suppressed = [f for f in result.findings if f.status is Status.SUPPRESSED]
    inactive = [f for f in result.findings if f.status is Status.INACTIVE]
    ordered = active + suppressed + inactive
    views = [_finding_view(f, i, anchors, rules) for i, f in enumerate(ordered, 1)]
    marks = _line_marks(views, ordered, result, anchors)
    groups = []
    for c in CONDITIONS + ["other"]:
        items = [v for v in views[: len(active)] if v["primary"] == c]
        if items:
            groups.append({"cond": c, "title": SHORT_TITLES.get(c, "Other"), "findings": items,
                           "verdict": static.get(c), "vcls": vclass(static.get(c))})
    grouped = {g["cond"] for g in groups}
    for c in conds:
        first = next((v["id"] for v in views[: len(active)] if c["cond"] in v["conditions"]), None)
        c["href"] = f"#group-{c['cond']}" if c["cond"] in grouped else (f"#{first}" if first else None)
    suppressions = []
    for fr in result.files:
        for s in fr.suppressions:
            suppressions.append({"path": s.path, "line": s.line, "rule_ids": list(s.rule_ids), "reason": s.reason,
                                 "used": s.used, "href": _href(anchors.line(s.path, s.line))})
    files = [_file_view(fr, anchors, marks) for fr in result.files]
    pr_href = safe_url(result.pr_url) or (pr_url_for(result.pr) if isinstance(result.pr, int) else None)
    name = sub.get("name") if isinstance(sub.get("name"), str) else None
    folder_name = result.target.rstrip("/").rsplit("/", 1)[-1] or result.target
    claimed = finite(sub.get("val_bpb"))
    recon = finite(result.dynamic.reconstructed.get("val_bpb")) if result.dynamic is not None else None
    artifact = finite(sub.get("bytes_total"))
    budgets = _budgets(result, logs)
    counts = {"error": 0, "warning": 0, "info": 0}
    for f in active:
        counts[f.severity.value] += 1
    tool = result.tool if isinstance(result.tool, dict) else {}
    return {
        "page": page,
        "target": result.target,
        "folder": folder_name,
        "title": name or folder_name,
        "pr": result.pr if isinstance(result.pr, int) else None,
        "pr_href": pr_href,
        "pr_url_text": result.pr_url if isinstance(result.pr_url, str) and not pr_href else None,
        "submission": [{"key": str(k), "value": scalar_text(v)} for k, v in sub.items()],
        "author": scalar_text(sub["author"]) if "author" in sub else "",
        "github_id": scalar_text(sub["github_id"]) if "github_id" in sub else "",
        "claimed_bpb": fnum(claimed), "claimed_sort": sort_num(claimed),
        "claimed_loss": fnum(sub.get("val_loss")),
        "recon_bpb": fnum(recon), "recon_sort": sort_num(recon),
        "artifact": fint(artifact), "artifact_sort": sort_num(artifact),
        "artifact_over": artifact is not None and artifact > ARTIFACT_LIMIT,
        "code_bytes": fint(sub.get("bytes_code")),
        "budgets": budgets,
        "env": [{"key": e.key, "value": e.value, "source": e.source} for e in result.env],
        "conditions": conds,
        "static_overall": result.overall.value, "dynamic_overall": d_overall,
        "overall": overall, "ovcls": vclass(overall),
        "incomplete": result.incomplete,
        "counts": counts,
        "n_active": len(active), "n_suppressed": len(suppressed), "n_inactive": len(inactive),
        "groups": groups,
        "suppressed": views[len(active): len(active) + len(suppressed)],
        "inactive": views[len(active) + len(suppressed):],
        "all_findings": views,
        "suppressions": suppressions,
        "files": files,
        "errors": [{"path": fr.path, "error": fr.error, "kind": fr.error_kind} for fr in result.files if fr.error],
        "missing_source": [fr.path for fr in result.files if fr.source is None and not fr.error],
        "tool": " · ".join(([scalar_text(tool["version"])] if "version" in tool else []) +
                           [f"{k} {scalar_text(v)}" for k, v in tool.items() if k not in ("name", "version")]),
        "dynamic": dynamic_view(result, static) if result.dynamic is not None else None,
        "search": " ".join([result.target, name or "", scalar_text(sub.get("author", "")),
                            scalar_text(sub.get("github_id", "")), str(result.pr or ""),
                            " ".join(sorted({f.rule_id for f in active}))]).lower(),
    }


# --- the dynamic section -----------------------------------------------------------------------------------------


def _text(v: Any) -> str:
    return "" if v is None else scalar_text(v)


def _sandbox_item(key: str, v: Any) -> dict[str, Any]:
    """One sandbox fact; network attempts and a kill are flagged."""
    flag = (key == "network_attempts" and bool(v)) or (key == "killed" and v not in (None, "", False))
    if isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
        text = ", ".join(str(x) for x in v) if v else "none"
    elif isinstance(v, dict) and all(isinstance(x, (str, int, float, bool)) or x is None for x in v.values()):
        text = " · ".join(f"{k} {scalar_text(x)}" for k, x in v.items())
    elif v is None:
        text = "—"
    else:
        text = scalar_text(v)
    return {"key": key.replace("_", " "), "value": text, "flag": flag}


def dynamic_view(result: AuditResult, static: dict[str, str]) -> dict[str, Any]:
    """The dynamic section's JSON (its documented shape) laid out for the page; verdicts come from the result."""
    dyn = result.dynamic.to_dict()
    ledger = dyn.get("ledger") if isinstance(dyn.get("ledger"), dict) else {}
    rep = dyn.get("reported") if isinstance(dyn.get("reported"), dict) else {}
    rec = dyn.get("reconstructed") if isinstance(dyn.get("reconstructed"), dict) else {}
    bpb = []
    for key, label in (("val_loss", "val_loss (nats/token)"), ("val_bpb", "val_bpb")):
        a, b = finite(rep.get(key)), finite(rec.get(key))
        diff = None if a is None or b is None else b - a
        bpb.append({"label": label, "reported": fnum(a, 6), "reconstructed": fnum(b, 6),
                    "diff": "—" if diff is None else f"{diff:+.6f}", "differs": diff is not None and abs(diff) > 1e-4})
    leak = dyn.get("leak") if isinstance(dyn.get("leak"), dict) else None
    if leak and finite(leak.get("reported_bpb")) is not None and finite(leak.get("first_look_bpb")) is not None:
        a, b = finite(leak.get("reported_bpb")), finite(leak.get("first_look_bpb"))
        bpb.append({"label": "val_bpb at each position's first look (the leak's worth)", "reported": fnum(a, 6),
                    "reconstructed": fnum(b, 6), "diff": f"{b - a:+.6f}", "differs": abs(b - a) > 1e-4})
    checks = []
    for c in dyn.get("checks") or []:
        if not isinstance(c, dict):
            continue
        fv = c.get("first_violation") if isinstance(c.get("first_violation"), dict) else None
        checks.append({"id": _text(c.get("id")), "condition": _text(c.get("condition")),
                       "verdict": c["verdict"], "vcls": vclass(c.get("verdict")),
                       "message": _text(c.get("message")),
                       "first": None if fv is None else {
                           "position": fint(fv.get("position")), "score_seq": fint(fv.get("score_seq")),
                           "update_seq": fint(fv.get("update_seq")), "detail": _text(fv.get("detail"))}})
    probes = []
    for p in dyn.get("probes") or []:
        if not isinstance(p, dict):
            continue
        mad = finite(p.get("max_abs_diff"))
        probes.append({"name": _text(p.get("name")), "condition": _text(p.get("condition")),
                       "verdict": p["verdict"], "vcls": vclass(p.get("verdict")),
                       "probed": _text(p.get("probed")), "max_abs_diff": "—" if mad is None else f"{mad:.3g}",
                       "message": _text(p.get("message"))})
    agreement = []
    for a in dyn.get("agreement") or []:
        if not isinstance(a, dict):
            continue
        agree = a.get("agree") if isinstance(a.get("agree"), bool) else None
        agreement.append({"condition": _text(a.get("condition")),
                          "static": a["static"] or "—", "svcls": vclass(a.get("static")),
                          "dynamic": a["dynamic"] or "—", "dvcls": vclass(a.get("dynamic")),
                          "agree": agree})
    tl = dyn.get("timeline") if isinstance(dyn.get("timeline"), dict) else None
    sandbox = dyn.get("sandbox")
    if isinstance(sandbox, dict):
        sandbox_items = [_sandbox_item(str(k), v) for k, v in sandbox.items()]
    elif sandbox is None:
        sandbox_items = None
    else:
        sandbox_items = [{"key": "sandbox", "value": scalar_text(sandbox), "flag": False}]
    conds = {c.value: v.value for c, v in result.dynamic_conditions.items()}
    overall = result.dynamic.overall().value
    complete = ledger.get("complete")
    return {
        "mode": _text(dyn.get("mode")) or "—",
        "script": _text(dyn.get("script")),
        "ledger": {"positions": fint(ledger.get("positions")), "events": fint(ledger.get("events")),
                   "score_events": fint(ledger.get("score_events")), "update_events": fint(ledger.get("update_events")),
                   "complete": complete if isinstance(complete, bool) else None, "path": _text(ledger.get("path"))},
        "bpb": bpb,
        "checks": checks,
        "probes": probes,
        "agreement": agreement,
        "timeline": svg.timeline(tl) if tl is not None else None,
        "downsampled": bool(tl.get("downsampled")) if tl is not None else False,
        "sandbox": sandbox_items,
        "conditions": [{"cond": c, "verdict": v, "vcls": vclass(v), "static": static.get(c) or "—",
                        "svcls": vclass(static.get(c))} for c, v in conds.items()],
        "overall": overall,
        "ovcls": vclass(overall),
    }


# --- reference runs -----------------------------------------------------------------------------------------------


def reference_view(run: ReferenceRun, page: str, rules: dict[str, type[Rule]]) -> dict[str, Any]:
    r = run.results
    seeds = [s for s in r.get("seeds") or [] if isinstance(s, dict)]
    ttt = _text(r.get("ttt"))
    stages = [(k, lab) for k, lab in svg.STAGES
              if any(isinstance(s.get(k), dict) for s in seeds) and not (k == "post_ttt" and ttt == "none")]
    summary = r.get("summary") if isinstance(r.get("summary"), dict) else {}
    rows = []
    for s in seeds:
        cells = []
        for k, _ in stages:
            v = finite(s[k].get("val_bpb")) if isinstance(s.get(k), dict) else None
            cells.append({"text": fnum(v, 4), "sort": sort_num(v)})
        rows.append({"seed": _text(s.get("seed")), "steps": fint(s.get("steps")), "cells": cells,
                     "artifact": fint(s.get("artifact_bytes")), "artifact_sort": sort_num(s.get("artifact_bytes")),
                     "within": s.get("within_limit") if isinstance(s.get("within_limit"), bool) else None,
                     "train": fnum(s.get("train_seconds"), 1), "eval": fnum(s.get("eval_seconds"), 1),
                     "train_sort": sort_num(s.get("train_seconds")), "eval_sort": sort_num(s.get("eval_seconds"))})
    stat_rows = []
    for stat in ("mean", "std"):
        def g(key: str) -> Any:
            d = summary.get(key)
            return d.get(stat) if isinstance(d, dict) else None
        stat_rows.append({"label": stat, "cells": [fnum(g(k), 4) for k, _ in stages],
                          "artifact": fint(g("artifact_bytes")) if stat == "mean" else fnum(g("artifact_bytes"), 0),
                          "train": fnum(g("train_seconds"), 1), "eval": fnum(g("eval_seconds"), 1)})
    sig = r.get("significance") if isinstance(r.get("significance"), dict) else {}
    tests = []
    for key, name in (("readme", "README record rule"), ("welch", "Welch t-test")):
        t = sig.get(key) if isinstance(sig.get(key), dict) else None
        if t is None:
            continue
        p = finite(t.get("p"))
        passed = t.get("passed") is True
        tests.append({"key": key, "name": name, "policy": _text(t.get("policy")), "passed": passed,
                      "na": p is None, "t": fnum(t.get("t"), 3), "df": fnum(t.get("df"), 2),
                      "p": "n/a" if p is None else f"{p:.4g}",
                      "alpha": fnum(t.get("alpha"), 2), "margin": fnum(t.get("margin_nats"), 3) if "margin_nats" in t else None,
                      "candidate_mean": fnum(t.get("candidate_mean"), 5),
                      "baseline_mean": fnum(t.get("baseline_mean"), 5)})
    legal = r.get("legal") is True
    rule_id = r.get("rule") if isinstance(r.get("rule"), str) else None
    rule = rules.get(rule_id) if rule_id else None
    spec = run.run_spec or {}
    prov = []
    if spec:
        tool = spec.get("tool") if isinstance(spec.get("tool"), dict) else {}
        git = spec.get("git") if isinstance(spec.get("git"), dict) else {}
        hw = spec.get("hardware") if isinstance(spec.get("hardware"), dict) else {}
        libs = spec.get("libraries") if isinstance(spec.get("libraries"), dict) else {}
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        for key, val in (("started", spec.get("started")), ("tool", tool.get("version")),
                         ("git commit", git.get("commit")), ("git dirty", git.get("dirty")),
                         ("device", spec.get("device")), ("world size", spec.get("world_size")),
                         ("platform", hw.get("platform")), ("torch", libs.get("torch")),
                         ("attention", libs.get("attention_backend")),
                         ("tokenizer sha256", data.get("tokenizer_sha256")), ("argv", spec.get("argv"))):
            if val is not None:
                prov.append({"key": key, "value": scalar_text(val)})
    cand = _text(sig.get("candidate"))
    cand_summary = summary.get(cand) if isinstance(summary.get(cand), dict) else {}
    return {
        "page": page,
        "config": _text(r.get("config")),
        "ttt": ttt,
        "legal": legal,
        "label": _text(r.get("label")) or ("LEGAL" if legal else "ILLEGAL"),
        "rule_id": rule_id,
        "rule_href": rule_page(rule) if rule else None,
        "mode_summary": _text(r.get("mode_summary")),
        "run_dir": _text(r.get("run_dir")),
        "stages": [lab for _, lab in stages],
        "rows": rows,
        "stat_rows": stat_rows,
        "n_seeds": len(seeds),
        "candidate": cand,
        "candidate_mean": fnum(cand_summary.get("mean"), 4),
        "candidate_sort": sort_num(cand_summary.get("mean")),
        "baseline": _text(sig.get("baseline")),
        "baseline_bpb": ", ".join(fnum(b, 4) for b in sig.get("baseline_bpb") or []) if isinstance(sig.get("baseline_bpb"), list) else "",
        "tests": tests,
        "plot_lines": svg.stage_lines(seeds, stages),
        "plot_bars": svg.seed_bars(seeds, stages),
        "provenance": prov,
        "title": f"{_text(r.get('config')) or 'reference'} · ttt {ttt or '—'}",
    }


# --- rules ---------------------------------------------------------------------------------------------------------


def _example(code: str, line: int | None) -> dict[str, Any]:
    text = textwrap.dedent(code).strip("\n") + "\n"
    return {"lines": [{"n": n, "html": html, "flag": n == line} for n, html in enumerate(highlight_lines(text), 1)],
            "line": line}


def rule_view(rule: type[Rule], flagged: list[dict[str, Any]]) -> dict[str, Any]:
    secs = rule.sections()
    sections = []
    for name, body in secs.items():
        if name in SECTIONS and body:
            sections.append({"name": name, "body": body, "code": name == "Example",
                             "paras": [p.replace("\n", " ") for p in body.split("\n\n")]})
    return {
        "page": rule_page(rule),
        "id": rule.id,
        "name": rule.name,
        "kind": KIND_TITLES.get(rule.kind, ""),
        "summary": secs.get("summary", rule.summary()),
        "conditions": [{"cond": c.value, "title": c.title} for c in rule.conditions],
        "severity": rule.severity.value,
        "confidence": rule.confidence.value,
        "message": rule.message,
        "ruling": ruling_view(rule),
        "sections": sections,
        "invalid": [_example(c.code, c.line) | {"env": [f"{k}={v}" for k, v in c.env]} for c in rule.INVALID],
        "valid": [_example(c.code, None) | {"env": [f"{k}={v}" for k, v in c.env]} for c in rule.VALID],
        "flagged": flagged,
    }
