"""Every rule's embedded VALID/INVALID examples run through the whole analyzer (Fixit-style)."""
from __future__ import annotations

import textwrap

import pytest

from audits.engine import audit_source
from audits.registry import all_rules
from audits.source import SourceFile
from audits.types import Status

CASES = [(rule, kind, i, case) for rule in all_rules()
         for kind, cases in (("VALID", rule.VALID), ("INVALID", rule.INVALID)) for i, case in enumerate(cases)]


def _audit(code: str, env):
    text = textwrap.dedent(code).strip("\n") + "\n"
    return audit_source(SourceFile("example.py", text, ""), {k: {v} for k, v in env})


@pytest.mark.parametrize("rule,kind,i,case", CASES, ids=[f"{r.id}-{k}-{i}" for r, k, i, _ in CASES])
def test_rule_example(rule, kind, i, case):
    result = _audit(case.code, case.env)
    got = [(f.rule_id, f.line) for f in result.findings if f.status is Status.ACTIVE]
    if kind == "VALID":
        assert got == [], f"{rule.id} VALID example {i} should be clean"
    else:
        assert got == [(rule.id, case.line)], f"{rule.id} INVALID example {i} must be reported at line {case.line} only"


def test_every_rule_has_examples_and_docs():
    for rule in all_rules():
        assert rule.VALID and rule.INVALID, rule.id
        sections = rule.sections()
        for name in ("What it flags", "Why it is illegal", "Example", "Use instead"):
            assert sections.get(name), f"{rule.id} doc lacks '{name}'"
        assert rule.ruling.who and rule.ruling.where and rule.ruling.quote, rule.id


def test_required_rule_ids_present():
    ids = {r.id for r in all_rules()}
    required = {"PG-TTT-001", "PG-TTT-002", "PG-TTT-003", "PG-TTT-004", "PG-TTT-006", "PG-TTT-007", "PG-SLOT-001", "PG-NG-001",
                "PG-NG-002", "PG-NG-003", "PG-NG-004", "PG-PPM-001", "PG-CAL-001", "PG-CAL-002", "PG-DATA-001",
                "PG-DATA-002", "PG-DATA-004", "PG-NET", "PG-BPB-001", "PG-BOS-001"}
    assert required <= ids
