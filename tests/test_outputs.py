"""Terminal, JSON and GitHub-annotation views of one result object."""
from __future__ import annotations

import os
import json
import re
from pathlib import Path

import jsonschema
import pytest

from audits.api import audit_paths
from audits.outputs import render
from audits.outputs.github import CAP, annotations, command, escape_data, escape_property
from audits.outputs.json_out import load_results, to_obj
from audits.results import AuditResult, FileResult, Finding
from audits.runenv import parse_env_args
from audits.types import Condition, Confidence, Severity, Status

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "audits" / "schemas" / "result.schema.json").read_text())


@pytest.fixture
def result(illegal_file):
    return audit_paths([illegal_file])


def test_concise_is_one_line_per_finding(result, illegal_file, samples):
    out = render("concise", [result])
    p = illegal_file.as_posix()
    lines = out.splitlines()
    assert f"{p}:{samples.net_line}:1: PG-NET [error] imports network module `requests`" in lines
    assert any(re.fullmatch(rf"{re.escape(p)}:{samples.ttt_line}:9: PG-TTT-001 \[error\] .+", ln) for ln in lines)
    assert lines[-1].endswith("-> overall FAIL (C3 FAIL, NET FAIL)")


def test_full_has_excerpt_caret_ruling_and_verdict_table(result, samples):
    out = render("full", [result])
    assert f"{samples.ttt_line} |         opt.step()" in out
    caret = out.splitlines()[out.splitlines().index(next(ln for ln in out.splitlines()
                                                          if ln.endswith(f"{samples.ttt_line} |         opt.step()"))) + 1]
    assert caret.strip().startswith("| ") and "^^^^^^^^^^ PG-TTT-001" in caret
    assert "ruling: maintainer ruling: 0hq (Will DePue)" in out
    assert "related: line 13:" in out
    for c in Condition:
        assert re.search(rf"^{re.escape(c.title)}\s+(PASS|WARN|FAIL)", out, re.M)
    assert re.search(r"^overall\s+FAIL$", out, re.M)


def test_full_shows_inactive_suppressed_and_unused_suppressions_apart(write, samples):
    text = samples.illegal.replace(
        "import requests", "import requests  # scorefirst: ignore[PG-NET] vendored for the offline tokenizer test")
    text += "x = 1  # scorefirst: ignore[PG-TTT-004] left over from an older version\n"
    p = write("s/train_gpt.py", text)
    res = audit_paths([p], env_settings=parse_env_args(["TTT_ENABLED=0"]))
    out = render("full", [res])
    assert "Inactive findings (code that cannot run under the stated environment; not counted):" in out
    assert "Suppressed findings (not counted):" in out
    assert "vendored for the offline tokenizer test" in out
    assert "ignore[PG-TTT-004] UNUSED (suppresses nothing)" in out
    assert "No active findings." in out or "SF-SUPP-001" in out
    concise = render("concise", [res])
    assert "unused suppression ignore[PG-TTT-004]" in concise


def test_json_validates_and_round_trips(result):
    obj = to_obj([result])
    jsonschema.Draft202012Validator(SCHEMA).validate(obj)
    back = load_results(json.loads(json.dumps(obj)))
    assert [r.to_dict() for r in back] == [result.to_dict()]
    assert obj["tool"]["grammar"] == "3.12" and obj["tool"]["name"] == "scorefirst"


def test_json_several_targets(result, clean_file):
    other = audit_paths([clean_file])
    obj = json.loads(render("json", [result, other]))
    jsonschema.Draft202012Validator(SCHEMA).validate(obj)
    assert set(obj) == {"schema_version", "tool", "results"}
    assert len(load_results(obj)) == 2


def test_json_schema_covers_errors_and_submission(write, samples):
    write("f/train_gpt.py", samples.illegal)
    write("f/bad.py", b"\xff\xfe\x00binary")
    write("f/submission.json", json.dumps({"name": "x", "val_bpb": 1.1}))
    res = audit_paths([write("f/README.md", "hi").parent])
    obj = to_obj([res])
    jsonschema.Draft202012Validator(SCHEMA).validate(obj)
    assert obj["submission"] == {"name": "x", "val_bpb": 1.1}
    assert [f["error_kind"] for f in obj["files"]] == ["binary", None]


# --- GitHub annotations ------------------------------------------------------------------------------------


def test_escaping():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    line = command("error", "msg, with: colon\nand newline", file="a,b:c.py", line=3, title="T: x, y")
    assert line == "::error file=a%2Cb%3Ac.py,line=3,title=T%3A x%2C y::msg, with: colon%0Aand newline"


def test_annotation_fields(result, samples):
    out = annotations([result])
    ttt = next(ln for ln in out.splitlines() if "PG-TTT-001" in ln)
    m = re.fullmatch(r"::error file=([^,]+),line=(\d+),endLine=(\d+),col=(\d+),endColumn=(\d+),title=([^:]+)::(.+)", ttt)
    assert m, ttt
    assert int(m.group(2)) == samples.ttt_line and int(m.group(4)) == 9 and int(m.group(5)) == 19
    assert m.group(6) == "PG-TTT-001 pre-eval-ttt"


def _finding(i: int, sev: Severity) -> Finding:
    return Finding("PG-TTT-001", "pre-eval-ttt", [Condition.C3], sev, Confidence.HIGH, f"msg {i}", "a.py", i + 1, 1,
                   i + 1, 5, "x", fingerprint=str(i))


def test_annotation_caps_and_more_line():
    findings = [_finding(i, Severity.ERROR) for i in range(25)] + [_finding(100 + i, Severity.WARNING) for i in range(3)]
    findings += [_finding(200 + i, Severity.INFO) for i in range(12)]
    findings.append(Finding("PG-NET", "network-access", [Condition.NET], Severity.ERROR, Confidence.HIGH, "inactive",
                            "a.py", 999, 1, 999, 2, "x", status=Status.INACTIVE))
    res = AuditResult("a.py", files=[FileResult("a.py", findings=findings),
                                     FileResult("b.py", error="b.py: binary file", error_kind="binary")])
    lines = annotations([res]).splitlines()
    assert sum(ln.startswith("::error ") for ln in lines) == CAP["error"] == 10
    assert sum(ln.startswith("::warning ") for ln in lines) == 3
    assert sum(ln.startswith("::notice ") for ln in lines) == 10
    assert lines[0].startswith("::error file=b.py,title=scorefirst%3A cannot audit (binary)::")  # errors first
    # 25 + 1 file error - 10 errors, and 12 - 9 notices, are left out; the inactive finding is not annotated
    assert lines[-1] == ("::notice title=scorefirst::19 more findings not shown as annotations (GitHub shows at most "
                         "10 per level and step); see the JSON or SARIF report")
    assert not any("inactive" in ln for ln in lines)


def test_render_rejects_unknown_format(result):
    with pytest.raises(ValueError):
        render("xml", [result])


def test_written_outputs_get_ordinary_permissions(tmp_path):
    from audits.outputs import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
