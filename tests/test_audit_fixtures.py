"""Whole-script fixtures: every `# expect:` finding is reported at its line, and nothing else is.

See tests/fixtures/audit/README.md for the annotation contract.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from audits.engine import audit_source
from audits.results import condition_verdicts, overall_verdict
from audits.source import SourceFile
from audits.types import Status

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
_ANN = re.compile(r"#\s*(expect|expect-inactive|ok):\s*([A-Z0-9\-, ]+)")
_ENV = re.compile(r"#\s*fixture-env:\s*(.*)")
_VERDICT = re.compile(r"#\s*fixture-verdict:\s*(.*)")


def annotations(text: str) -> tuple[set, set]:
    active, inactive = set(), set()
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in _ANN.finditer(line):
            ids = {x.strip() for x in m.group(2).split(",") if x.strip()}
            if m.group(1) == "expect":
                active |= {(i, lineno) for i in ids}
            elif m.group(1) == "expect-inactive":
                inactive |= {(i, lineno) for i in ids}
    return active, inactive


def header(regex, text: str) -> dict[str, str]:
    for line in text.splitlines()[:8]:
        m = regex.search(line)
        if m:
            return dict(item.split("=", 1) for item in m.group(1).split() if "=" in item)
    return {}


FILES = sorted(FIXTURES.glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fixture(path: Path):
    text = path.read_text()
    env = {k: {v} for k, v in header(_ENV, text).items()}
    result = audit_source(SourceFile(path.name, text, ""), env)
    layers = {0: text} | {d.layer: d.text for d in result.decoded}
    for layer, layer_text in layers.items():
        want_active, want_inactive = annotations(layer_text)
        in_layer = [f for f in result.findings if (f.origin.layer if f.origin else 0) == layer
                    and f.rule_id != "SF-SUPP-001"]
        got_active = {(f.rule_id, f.line) for f in in_layer if f.status is Status.ACTIVE}
        got_inactive = {(f.rule_id, f.line) for f in in_layer if f.status is Status.INACTIVE}
        where = f"{path.name}" + (f" (decoded layer {layer})" if layer else "")
        assert sorted(got_active - want_active) == [], f"{where}: unexpected findings"
        assert sorted(want_active - got_active) == [], f"{where}: missing findings"
        assert sorted(got_inactive - want_inactive) == [], f"{where}: unexpected inactive findings"
        assert sorted(want_inactive - got_inactive) == [], f"{where}: missing inactive findings"
    verdict = header(_VERDICT, text)
    if verdict:
        conditions = condition_verdicts(result.findings)
        got = {c.value: v.value for c, v in conditions.items()} | {"overall": overall_verdict(conditions).value}
        assert {k: got[k] for k in verdict} == verdict, f"{path.name}: verdicts"


def test_fixture_corpus_covers_every_required_rule():
    seen = set()
    for p in FILES:
        text = p.read_text()
        for layer_text in [text] + [p2.read_text() for p2 in FIXTURES.glob("packed_src_*.py.txt")]:
            seen |= {rule for rule, _ in annotations(layer_text)[0] | annotations(layer_text)[1]}
    required = {"PG-TTT-001", "PG-TTT-002", "PG-TTT-003", "PG-TTT-004", "PG-TTT-006", "PG-TTT-007", "PG-SLOT-001", "PG-NG-001",
                "PG-NG-002", "PG-NG-003", "PG-NG-004", "PG-PPM-001", "PG-CAL-001", "PG-CAL-002", "PG-DATA-001",
                "PG-DATA-002", "PG-DATA-004", "PG-NET", "PG-BPB-001", "PG-BOS-001"}
    assert required <= seen, sorted(required - seen)
