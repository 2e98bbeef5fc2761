"""Static versus dynamic verdict, per condition. A disagreement is surfaced for a person, never resolved: the
combined verdict a report shows is the worse of the two, and the agreement table says where they differ and why
each side decided as it did.
"""

from __future__ import annotations

from audits.results import AuditResult
from audits.types import Condition, Verdict
from audits.dynamic_result import Agreement, DynamicResult

CONDITIONS = [c.value for c in Condition]  # C1 C2 C3 C4 DATA CAL NET BYTES


def dynamic_verdicts(dyn: DynamicResult) -> dict[str, Verdict | None]:
    """Per condition: the worst check/probe verdict; NET from the sandbox (blocked attempts FAIL, a run in an
    empty network namespace with none PASS — WARN when the guard's records were tampered with, so that none
    proves nothing —, no isolation or no sandbox: not judged); CAL never."""
    out: dict[str, Verdict | None] = {c: dyn.verdict_of(c) for c in CONDITIONS}
    sb = dyn.sandbox
    untrusted = any(c.id == "guard-log" and c.verdict != "PASS" for c in dyn.checks)
    if sb is not None and sb.network.startswith("none"):
        out["NET"] = Verdict.FAIL if sb.network_attempts else Verdict.WARN if untrusted else Verdict.PASS
    elif sb is not None and sb.network_attempts:
        out["NET"] = Verdict.FAIL
    return out


def agreement(static: AuditResult | None, dyn: DynamicResult) -> list[Agreement]:
    """One row per condition; ``agree`` is None where either side gave no verdict."""
    s = {c.value: v for c, v in static.conditions.items()} if static is not None else {}
    d = dynamic_verdicts(dyn)
    return [Agreement(c, s.get(c), d.get(c)) for c in CONDITIONS if s.get(c) is not None or d.get(c) is not None]


def disagreements(dyn: DynamicResult) -> list[Agreement]:
    return [a for a in dyn.agreement if a.agree is False]


def explain(static: AuditResult | None, dyn: DynamicResult, row: Agreement) -> str:
    """One line saying what each side rests on, for a disagreeing condition."""
    parts = []
    if static is not None:
        fs = [f for f in static.findings if f.status.value == "active" and any(c.value == row.condition
                                                                               for c in f.conditions)]
        parts.append("static: " + ("; ".join(f"{f.rule_id} at {f.path}:{f.line}" for f in fs[:3])
                                   if fs else "no active finding"))
    items = [i for i in [*dyn.checks, *dyn.probes] if i.condition == row.condition and i.verdict != "PASS"]
    name = lambda i: getattr(i, "id", None) or getattr(i, "name")  # noqa: E731
    parts.append("dynamic: " + ("; ".join(f"{name(i)} {i.verdict}" for i in items[:3]) if items
                                else "every check passed" if row.dynamic is Verdict.PASS else "not examined"))
    return " · ".join(parts)
