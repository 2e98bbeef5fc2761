"""C3, DATA and CAL findings show how the data reach the flagged call: where validation (or training) tokens enter
and the calls that carry them there, as related lines in every output."""
from __future__ import annotations

from pathlib import Path

from audits.api import audit_paths

FIX = Path(__file__).parent / "fixtures" / "audit"


def _related(name: str, rule: str) -> list[tuple[int, str]]:
    result = audit_paths([FIX / name])
    f = next(f for f in result.findings if f.rule_id == rule)
    return [(r.line, r.message) for r in f.related]


def test_pre_eval_update_names_the_load_and_the_call_chain():
    rel = _related("cause_higher_order_eval.py", "PG-TTT-001")
    assert (74, "validation data enters here") in rel
    assert (76, "`main` calls `adapt` here") in rel
    assert rel[0] == (41, "the same validation tokens are scored later here")  # the rule's own evidence first


def test_calibration_on_val_names_where_the_tokens_come_from():
    rel = _related("gptq_calibrate_on_val.py", "PG-CAL-002")
    assert any(msg == "validation data enters here" for _, msg in rel), rel


def test_trail_reaches_sarif_related_locations(tmp_path, cli):
    import json

    out = tmp_path / "r.sarif"
    cli("audit", str(FIX / "cause_higher_order_eval.py"), "--sarif", str(out), "--exit-zero", "--no-cache")
    run = json.loads(out.read_text())["runs"][0]
    res = next(r for r in run["results"] if r["ruleId"] == "PG-TTT-001")
    lines = [loc["physicalLocation"]["region"]["startLine"] for loc in res.get("relatedLocations", [])]
    assert 74 in lines and 76 in lines
