"""JSON view: one `AuditResult.to_dict()`, or `{"schema_version", "tool", "results": [...]}` for several targets.

The shape is documented by `audits/schemas/result.schema.json`.
"""
from __future__ import annotations

import json
from typing import Any

from audits.results import SCHEMA_VERSION, AuditResult


def to_obj(results: list[AuditResult]) -> dict[str, Any]:
    if len(results) == 1:
        return results[0].to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": results[0].tool if results else {},
        "results": [r.to_dict() for r in results],
    }


def dumps(results: list[AuditResult]) -> str:
    return json.dumps(to_obj(results), indent=2, ensure_ascii=False) + "\n"


def load_results(obj: dict[str, Any]) -> list[AuditResult]:
    """Read back what `to_obj` wrote (one result or several)."""
    if "results" in obj:
        return [AuditResult.from_dict(d) for d in obj["results"]]
    return [AuditResult.from_dict(obj)]
