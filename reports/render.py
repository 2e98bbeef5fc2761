"""Render a report folder: `index.html`, a page per submission, per reference run and per rule.

Pages are self-contained (CSS, JS and SVG inline; a Content-Security-Policy that allows nothing else, so even a
rendering bug could not load or run anything) and work opened from file://. Rendering is deterministic: the same
results give byte-identical pages, except the one `<footer id="build-info">` element, which holds the versions
and the time of rendering (`SOURCE_DATE_EPOCH` fixes the time too).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jinja2
from markupsafe import Markup

from audits.registry import catalogue
from audits.results import AuditResult
from audits.types import Status
from core.version import __version__
from reports import views
from reports.inputs import Inputs, ReferenceRun

MANIFEST = ".scorefirst-report.json"
RANK = {"PASS": 0, "WARN": 1, "FAIL": 2}
FOOTER_START = '<footer id="build-info">'


_WBR = re.compile(r"[_/-]")


def make_env(strict: bool = False) -> jinja2.Environment:
    """jinja2 with autoescaping on for every template; StrictUndefined when `strict` (the tests use it)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "svg", "xml"], default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True,
    )
    env.filters["wbr"] = wbr
    env.filters["ticks"] = ticks
    return env


_TICKS = re.compile(r"`([^`\n]+)`")


def ticks(text: object) -> Markup:
    """Escape `text` and show `backticked` spans as code (rule docs and finding messages use them)."""
    from markupsafe import escape

    return Markup(_TICKS.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(str(text)))))


def wbr(text: object) -> Markup:
    """Escape `text` and allow line breaks after `_`, `/` and `-`, so long folder names wrap at word-like points."""
    from markupsafe import escape

    return Markup(_WBR.sub(lambda m: m.group(0) + "<wbr>", str(escape(str(text)))))


def _static(name: str) -> str:
    return resources.files("reports").joinpath("static", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"scorefirst": __version__}
    for dist in ("jinja2", "pygments"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover
            out[dist] = "unknown"
    out["python"] = platform.python_version()
    return out


def rendered_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        t = int(epoch) if epoch else None
    except ValueError:
        t = None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t if t is not None else time.time()))


def footer_text(info: dict[str, str] | None = None, at: str | None = None) -> str:
    v = info or versions()
    names = {"jinja2": "Jinja2", "pygments": "Pygments", "python": "Python"}
    extra = ", ".join(f"{names.get(k, k)} {val}" for k, val in v.items() if k != "scorefirst")
    return f"Rendered by scorefirst {v.get('scorefirst', '?')} ({extra}) at {at or rendered_at()}."


@dataclass
class Report:
    pages: dict[str, str] = field(default_factory=dict)  # file name -> HTML
    submissions: int = 0
    references: int = 0
    rules: int = 0
    missing_sources: list[str] = field(default_factory=list)
    submission_pages: dict[str, str] = field(default_factory=dict)  # page -> audited target
    reference_pages: dict[str, str] = field(default_factory=dict)  # page -> run title


def _page_names(results: list[AuditResult]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for r in results:
        folder = r.target.rstrip("/").rsplit("/", 1)[-1] or r.target
        base = f"sub-{views.slugify(folder)}-{views.short_hash(r.target, r.pr)}"
        name, k = f"{base}.html", 2
        while name in seen:
            name, k = f"{base}-{k}.html", k + 1
        seen.add(name)
        names.append(name)
    return names


def _ref_name(run: ReferenceRun, seen: set[str]) -> str:
    r = run.results
    base = (f"ref-{views.slugify(str(r.get('config', 'run')) + '-' + str(r.get('ttt', '')))}-"
            f"{views.short_hash(json.dumps(r, sort_keys=True, default=str))}")
    name, k = f"{base}.html", 2
    while name in seen:
        name, k = f"{base}-{k}.html", k + 1
    seen.add(name)
    return name


def build(inputs: Inputs, *, strict: bool = False, title: str | None = None, footer: str | None = None) -> Report:
    """Every page of the report, in memory."""
    env = make_env(strict)
    css, js = _static("report.css"), _static("report.js")
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    build_info = {"css": Markup(css), "js": Markup(js), "csp": csp, "footer": footer if footer is not None else footer_text()}
    rules = {r.id: r for r in catalogue()}

    logs = list(inputs.logs) + [None] * (len(inputs.audits) - len(inputs.logs))
    order = sorted(range(len(inputs.audits)),
                   key=lambda i: (inputs.audits[i].target.lower(), inputs.audits[i].target,
                                  inputs.audits[i].pr if isinstance(inputs.audits[i].pr, int) else -1))
    results = [inputs.audits[i] for i in order]
    logs = [logs[i] for i in order]
    names = _page_names(results)
    subs = [views.submission_view(r, n, rules, lg) for r, n, lg in zip(results, names, logs)]

    seen: set[str] = set()
    refs = [views.reference_view(run, _ref_name(run, seen), rules) for run in inputs.references]
    refs.sort(key=lambda r: (r["title"], r["page"]))

    report = Report(submissions=len(subs), references=len(refs), rules=len(rules),
                    missing_sources=list(inputs.missing_sources),
                    submission_pages={s["page"]: s["target"] for s in subs},
                    reference_pages={r["page"]: r["title"] for r in refs})
    page_title = title or "Compliance report"
    counts = []
    for v in views.VERDICTS:
        counts.append({"verdict": v, "vcls": views.vclass(v), "n": sum(1 for s in subs if s["overall"] == v)})
    flagged_by_rule: dict[str, list[dict[str, Any]]] = {rid: [] for rid in rules}
    for s in subs:
        for f in s["all_findings"]:
            if f["rule_id"] in flagged_by_rule:
                flagged_by_rule[f["rule_id"]].append({"href": f"{s['page']}#{f['id']}", "folder": s["folder"],
                                                      "where": f["where"], "status": f["status"]})
    rule_rows = []
    for rid, rule in rules.items():
        active_subs = {x["href"].split("#", 1)[0] for x in flagged_by_rule[rid] if x["status"] == Status.ACTIVE.value}
        rule_rows.append({"id": rid, "name": rule.name, "page": views.rule_page(rule),
                          "conditions": ", ".join(c.value for c in rule.conditions), "severity": rule.severity.value,
                          "flagged": len(active_subs), "summary": rule.summary()})

    ctx = {"build": build_info, "rank": RANK}
    sub_tpl = env.get_template("submission.html")
    for i, s in enumerate(subs):
        report.pages[s["page"]] = sub_tpl.render(ctx, s=s, prev=subs[i - 1] if i > 0 else None,
                                                 next=subs[i + 1] if i + 1 < len(subs) else None)
    ref_tpl = env.get_template("reference.html")
    for r in refs:
        report.pages[r["page"]] = ref_tpl.render(ctx, r=r)
    rule_tpl = env.get_template("rule.html")
    for rid, rule in rules.items():
        report.pages[views.rule_page(rule)] = rule_tpl.render(ctx, r=views.rule_view(rule, flagged_by_rule[rid]))
    # the index links every page: report-wide pages beyond submissions, references and rules under "More pages"
    listed = {*report.submission_pages, *report.reference_pages, *(r["page"] for r in rule_rows)}
    index = env.get_template("index.html").render(
        ctx, title=page_title, subs=subs, refs=refs, rules=rule_rows, counts=counts,
        others=[p for p in report.pages if p not in listed],
        incomplete=sum(1 for s in subs if s["incomplete"]), conditions=subs[0]["conditions"] if subs else
        [{"cond": c, "title": views.SHORT_TITLES[c]} for c in views.CONDITIONS])
    report.pages = {"index.html": index, **report.pages}
    return report


def write(report: Report, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the pages; pages this tool wrote there before and no longer renders are removed."""
    from audits.outputs import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    previous: list[str] = []
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        if isinstance(old, dict) and isinstance(old.get("pages"), list):
            previous = [p for p in old["pages"] if isinstance(p, str)]
    except (OSError, ValueError):
        pass
    written = []
    for name in sorted(report.pages):
        write_atomic(out / name, report.pages[name])
        written.append(out / name)
    for name in previous:
        if name not in report.pages and "/" not in name and "\\" not in name and name.endswith(".html"):
            try:
                (out / name).unlink()
            except OSError:
                pass
    write_atomic(manifest, json.dumps({"generator": "scorefirst report", "pages": sorted(report.pages)}, indent=1) + "\n")
    return written


def render_inputs(inputs: Inputs, out_dir: str | os.PathLike[str], *, strict: bool = False,
                  title: str | None = None) -> Report:
    report = build(inputs, strict=strict, title=title)
    write(report, out_dir)
    return report


def render_paths(paths: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 source_roots: Iterable[str | os.PathLike[str]] = (), strict: bool = False,
                 title: str | None = None) -> Report:
    """`scorefirst report`: read stored results and render them."""
    from reports.inputs import load_inputs

    return render_inputs(load_inputs(list(paths), list(source_roots)), out_dir, strict=strict, title=title)


def render_results(results: list[AuditResult], out_dir: str | os.PathLike[str], *,
                   logs: list[dict[str, Any] | None] | None = None, strict: bool = False,
                   title: str | None = None) -> Report:
    """`scorefirst audit --html`: render results still in memory (their sources included)."""
    inputs = Inputs(audits=list(results), logs=list(logs) if logs is not None else [None] * len(results))
    inputs.missing_sources = [f"{r.target}: {fr.path}" for r in results for fr in r.files
                              if fr.source is None and not fr.error]
    return render_inputs(inputs, out_dir, strict=strict, title=title)


def scrub_footer(html: str) -> str:
    """The page with the footer's contents removed (what gold files compare)."""
    start = html.find(FOOTER_START)
    if start < 0:
        return html
    end = html.find("</footer>", start)
    return html[: start + len(FOOTER_START)] + html[end:]
