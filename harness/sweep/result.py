"""The sweep JSON: one document with every PR, the clusters, the lineage and the timeline.

Its versioned schema is `harness/schemas/sweep.schema.json` (documented in docs/sweep.md); the triage site and
the SARIF file are views of this document. Each PR carries its audit results in the audit JSON's own schema
(`audits/schemas/result.schema.json`), so every finding is exactly what `scorefirst audit` reports.
"""
from __future__ import annotations

from typing import Any

from audits.api import pr_url_for, tool_info
from audits.results import AuditResult
from harness.sweep import analysis
from harness.sweep.run import Options, Outcome

SCHEMA = "scorefirst-sweep"
SCHEMA_VERSION = "1.0"
PR_FIELDS = ("number", "url", "title", "author", "state", "date", "merged_at", "head", "merged", "base", "commit",
             "status", "error", "verdict", "rules", "incomplete", "claimed_bpb", "folders", "lineage", "clusters",
             "results")


def build(opts: Options, outcome: Outcome) -> dict[str, Any]:
    order = [i for i in outcome.infos if i.number in outcome.records]
    clusters = analysis.clusters(order, outcome.records)
    lineage = analysis.lineage(order, outcome.records)
    of_pr: dict[int, list[str]] = {}
    for c in clusters:
        for n in c["members"]:
            of_pr.setdefault(n, []).append(c["id"])
    prs = []
    listed = [(i, outcome.records[i.number]) for i in order]
    listed += [(None, rec) for n, rec in sorted(outcome.records.items()) if n not in {i.number for i in order}]
    for info, rec in listed:
        n = rec["number"]
        audited = rec["status"] == "audited"
        prs.append({
            "number": n,
            "url": (info.url if info and info.url else pr_url_for(n)),
            "title": info.title if info else "",
            "author": info.author if info else "",
            "state": (info.state if info and info.state else ("merged" if rec.get("merged") else "unmerged")),
            "date": info.date if info else "",
            "merged_at": info.merged_at if info else "",
            "head": rec.get("head"),
            "merged": bool(rec.get("merged")),
            "base": rec.get("base"),
            "commit": rec.get("commit"),
            "status": rec["status"],
            "error": rec.get("error"),
            "verdict": rec.get("verdict") if audited else None,
            "rules": rec.get("rules", []) if audited else [],
            "incomplete": bool(rec.get("incomplete")),
            "claimed_bpb": rec.get("claimed_bpb"),
            "folders": rec.get("folders", []),
            "lineage": lineage.get(n),
            "clusters": of_pr.get(n, []),
            "results": rec.get("results", []),
        })
    counts = {b: 0 for b in analysis.VERDICT_BUCKETS}
    for rec in outcome.records.values():
        b = analysis.bucket(rec)
        if b:
            counts[b] += 1
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tool": tool_info(),
        "repository": {"path": str(opts.repo), "branch": outcome.branch, "tip": outcome.branch_tip},
        "selection": {"prs": sorted(opts.prs) if opts.prs else None,
                      "since": opts.since.strftime("%Y-%m-%dT%H:%M:%SZ") if opts.since else None,
                      "metadata": bool(opts.metadata)},
        "summary": {
            "prs": len(prs),
            "audited": sum(1 for p in prs if p["status"] == "audited"),
            "no_records": sum(1 for p in prs if p["status"] == "no-records"),
            "errors": sum(1 for p in prs if p["status"] == "error"),
            "verdicts": counts,
            "clusters": sum(1 for c in clusters if c["count"] > 1),
            "with_lineage": len(lineage),
            "from_journal": outcome.reused,
            "files": sum(len(r.get("files", [])) for p in prs for r in p["results"]),
        },
        "prs": prs,
        "clusters": clusters,
        "timeline": analysis.timeline(order, outcome.records),
    }


def audit_results(doc: dict[str, Any]) -> list[AuditResult]:
    """Every target of every PR as `AuditResult`s (for SARIF), in the document's order."""
    return [AuditResult.from_dict(r) for p in doc["prs"] for r in p["results"]]
