"""The sweep's triage site: one self-contained page (same style, script and Content-Security-Policy as the
report) with every PR, the clusters of shared violating code, lineage and a timeline of submissions per week.

It is a view of the sweep JSON (`harness/sweep/result.py`); nothing is recomputed here but layout.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from markupsafe import Markup

from reports import render, views
from reports.svg import fmt

BUCKETS = ("FAIL", "WARN", "INCOMPLETE", "ERROR", "PASS")  # stacking order of the timeline, bottom first
BUCKET_CLASS = {"FAIL": "fail", "WARN": "warn", "PASS": "pass", "INCOMPLETE": "inc", "ERROR": "err"}
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 900.0, 220.0, 40.0, 36.0, 12.0
SNIPPET_CHARS = 400


def timeline_svg(weeks: list[dict[str, Any]]) -> dict[str, Any]:
    """Bar geometry: one stacked bar per week, a y axis with round ticks, a label every few weeks."""
    if not weeks:
        return {"bars": [], "ticks": [], "labels": [], "w": fmt(CHART_W), "h": fmt(CHART_H)}
    top = max(sum(w[b] for b in BUCKETS) for w in weeks) or 1
    ticks = [t for t in _ticks(top)]
    ymax = max(ticks[-1] if ticks else top, top)
    plot_w, plot_h = CHART_W - PAD_L - 8, CHART_H - PAD_T - PAD_B
    step = plot_w / len(weeks)
    bw = max(1.0, step * 0.8)
    bars, labels = [], []
    every = max(1, round(len(weeks) / 10))
    for i, w in enumerate(weeks):
        x = PAD_L + i * step + (step - bw) / 2
        y = CHART_H - PAD_B
        total = sum(w[b] for b in BUCKETS)
        for b in BUCKETS:
            if not w[b]:
                continue
            h = plot_h * w[b] / ymax
            y -= h
            bars.append({"x": fmt(x), "y": fmt(y), "w": fmt(bw), "h": fmt(h), "cls": BUCKET_CLASS[b],
                         "tip": f"week of {w['week']}: {w[b]} {b} (of {total})"})
        if i % every == 0:
            labels.append({"x": fmt(x + bw / 2), "y": fmt(CHART_H - PAD_B + 14), "text": w["week"][5:]})
    tick_rows = [{"y": fmt(CHART_H - PAD_B - plot_h * t / ymax), "text": str(int(t))} for t in ticks]
    return {"bars": bars, "ticks": tick_rows, "labels": labels, "w": fmt(CHART_W), "h": fmt(CHART_H),
            "x0": fmt(PAD_L), "x1": fmt(CHART_W - 8), "y0": fmt(CHART_H - PAD_B)}


def _ticks(top: int) -> list[int]:
    step = 1
    for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        step = s
        if top / s <= 5:
            break
    return list(range(0, top + step, step))


def pr_view(p: dict[str, Any], clusters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    verdict = p["verdict"] if p["status"] == "audited" else ("ERROR" if p["status"] == "error" else "NONE")
    bucket = verdict
    if p["status"] == "audited" and p["incomplete"] and verdict == "PASS":
        bucket = "INCOMPLETE"
    findings = []
    for r in p["results"]:
        for fr in r.get("files", []):
            if fr.get("error"):
                findings.append({"sev": "error", "rule": fr.get("error_kind") or "error", "where": fr["path"],
                                 "message": fr["error"], "snippet": ""})
            for f in fr.get("findings", []):
                if f["status"] != "active":
                    continue
                line = f["line"]
                where = f"{f['path']}:{line}" + (f" (decoded layer {f['origin']['layer']})" if f.get("origin") else "")
                findings.append({"sev": f["severity"], "rule": f["rule_id"], "where": where, "message": f["message"],
                                 "snippet": f["snippet"][:SNIPPET_CHARS]})
    shared = [clusters[c] for c in p["clusters"] if c in clusters and clusters[c]["count"] > 1]
    lin = p.get("lineage")
    words = [str(p["number"]), p["title"], p["author"], p["state"], bucket, *p["rules"], *p["folders"]]
    if lin:
        words.append(f"from #{lin['parent']}")
    return {
        "n": p["number"], "url": p["url"], "title": p["title"] or (p["folders"][0].rsplit("/", 1)[-1] if p["folders"] else ""),
        "author": p["author"], "state": p["state"], "date": (p["date"] or "")[:10], "date_sort": p["date"] or "",
        "verdict": verdict, "bucket": bucket, "vcls": views.vclass(verdict),
        "rules": p["rules"], "incomplete": p["incomplete"], "error": p["error"],
        "claimed": views.fnum(p["claimed_bpb"]), "claimed_sort": views.sort_num(p["claimed_bpb"]),
        "folders": p["folders"], "findings": findings, "clusters": shared, "lineage": lin,
        "search": " ".join(w for w in words if w).lower(),
    }


def build_page(doc: dict[str, Any], *, title: str = "Sweep triage", footer: str | None = None,
               strict: bool = False) -> str:
    env = render.make_env(strict)
    css = render._static("report.css") + render._static("sweep.css")
    js = render._static("report.js")
    csp = (f"default-src 'none'; style-src {render._csp_hash(css)}; script-src {render._csp_hash(js)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    build_info = {"css": Markup(css), "js": Markup(js), "csp": csp,
                  "footer": footer if footer is not None else render.footer_text()}
    cl_by_id = {c["id"]: c for c in doc["clusters"]}
    listed = [p for p in doc["prs"] if p["status"] != "no-records"]
    prs = [pr_view(p, cl_by_id) for p in listed]
    titles = {p["n"]: p["title"] for p in prs}
    shared = [dict(c, first_title=titles.get(c["first_pr"], "")) for c in doc["clusters"] if c["count"] > 1]
    counts = []
    for b in ("FAIL", "WARN", "PASS", "INCOMPLETE", "ERROR"):
        counts.append({"verdict": b, "vcls": BUCKET_CLASS[b] if b in ("FAIL", "WARN", "PASS") else "none",
                       "n": sum(1 for p in prs if p["bucket"] == b)})
    skipped = [p for p in doc["prs"] if p["status"] == "no-records"]
    return env.get_template("sweep.html").render(
        build=build_info, title=title, doc=doc, prs=prs, clusters=shared, counts=counts,
        skipped=skipped, chart=timeline_svg(doc["timeline"]), summary=doc["summary"], repo=doc["repository"])


def render_site(doc: dict[str, Any], out_dir: str | os.PathLike[str], *, title: str = "Sweep triage") -> Path:
    from audits.outputs import write_atomic

    target = Path(out_dir) / "index.html"
    write_atomic(target, build_page(doc, title=title))
    return target
