"""SARIF 2.1.0: valid against the official schema, what GitHub needs, 1-based columns, stable fingerprints."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from audits.api import audit_paths
from audits.dynamic_result import DynamicResult
from audits.outputs.sarif import FINGERPRINT_KEY, to_obj
from audits.registry import all_rules
from audits.results import AuditResult
from audits.runenv import parse_env_args

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)


def validate(obj):
    errors = sorted(VALIDATOR.iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def test_schema_itself_is_valid():
    jsonschema.Draft4Validator.check_schema(SCHEMA)


@pytest.fixture
def sarif(illegal_file):
    return to_obj([audit_paths([illegal_file])])


def test_validates_and_has_github_required_fields(sarif):
    validate(sarif)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "scorefirst" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == [r.id for r in all_rules()]
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and len(rule["shortDescription"]["text"]) <= 1024
        assert rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"].startswith(f"# {rule['id']}")
        assert rule["helpUri"].endswith(f"/docs/rules/{rule['id']}.md")
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert rule["properties"]["precision"] in ("very-high", "high", "medium", "low")
        assert rule["properties"]["tags"]
    for res in run["results"]:
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["message"]["text"]
        assert 1 <= len(res["locations"]) <= 10
        assert res["partialFingerprints"][FINGERPRINT_KEY]
    assert run["automationDetails"]["id"].startswith("scorefirst/")
    assert run["invocations"][0]["executionSuccessful"] is True


def test_columns_are_one_based(sarif, samples, illegal_file):
    results = {r["ruleId"]: r for r in sarif["runs"][0]["results"]}
    net = results["PG-NET"]["locations"][0]["physicalLocation"]
    assert net["artifactLocation"]["uri"].endswith("train_gpt.py")
    assert net["region"]["startLine"] == samples.net_line
    assert net["region"]["startColumn"] == 1  # `import requests` starts the line
    assert net["region"]["endColumn"] == len("import requests") + 1  # exclusive end
    ttt = results["PG-TTT-001"]["locations"][0]["physicalLocation"]["region"]
    assert (ttt["startLine"], ttt["startColumn"], ttt["endColumn"]) == (samples.ttt_line, 9, 19)
    line = illegal_file.read_text().splitlines()[samples.ttt_line - 1]
    assert line[ttt["startColumn"] - 1:ttt["endColumn"] - 1] == "opt.step()"


def test_fingerprints_survive_moving_code_down(write, samples):
    p = write("m/train_gpt.py", samples.illegal)
    before = to_obj([audit_paths([p])])["runs"][0]["results"]
    lines = samples.illegal.splitlines(keepends=True)
    p.write_text("".join(lines[:3]) + "# a comment\n\n\n" + "".join(lines[3:]))  # everything below moves 3 lines
    after = to_obj([audit_paths([p])])["runs"][0]["results"]
    fp = lambda rs: {(r["ruleId"], r["partialFingerprints"][FINGERPRINT_KEY]) for r in rs}  # noqa: E731
    assert fp(before) == fp(after) and len(fp(before)) == 2
    ttt_before = next(r for r in before if r["ruleId"] == "PG-TTT-001")
    ttt_after = next(r for r in after if r["ruleId"] == "PG-TTT-001")
    line = lambda r: r["locations"][0]["physicalLocation"]["region"]["startLine"]  # noqa: E731
    assert line(ttt_after) == line(ttt_before) + 3


def test_suppressed_and_inactive_findings(write, samples):
    text = samples.illegal.replace("import requests", "import requests  # scorefirst: ignore[PG-NET] used only offline")
    p = write("s/train_gpt.py", text)
    obj = to_obj([audit_paths([p], env_settings=parse_env_args(["TTT_ENABLED=0"]))])
    validate(obj)
    results = {r["ruleId"]: r for r in obj["runs"][0]["results"]}
    assert results["PG-NET"]["suppressions"] == [{"kind": "inSource", "status": "accepted",
                                                  "justification": "used only offline"}]
    ttt = results["PG-TTT-001"]
    assert ttt["level"] == "note" and ttt["properties"]["inactive"] is True and ttt["properties"]["status"] == "inactive"
    assert ttt["properties"]["inactiveReason"]


def test_file_errors_are_notifications(write, samples):
    write("e/train_gpt.py", samples.illegal)
    write("e/broken.py", "def f(:\n    pass\n")
    obj = to_obj([audit_paths([write("e/README.md", "x").parent])])
    validate(obj)
    inv = obj["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    note = inv["toolExecutionNotifications"][0]
    assert note["level"] == "error" and "syntax error" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("e/broken.py")
    assert obj["runs"][0]["results"]  # the other file still has results


def test_one_run_for_many_targets(illegal_file, clean_file, tmp_path):
    results = [audit_paths([illegal_file.parent]), audit_paths([clean_file.parent])]
    obj = to_obj(results, root=str(tmp_path))
    validate(obj)
    assert len(obj["runs"]) == 1
    run = obj["runs"][0]
    assert len(run["tool"]["driver"]["rules"]) == len(list(all_rules()))  # each descriptor once
    assert [(t["target"], t["verdict"]["overall"]) for t in run["properties"]["targets"]] == [
        (results[0].target, "FAIL"), (results[1].target, "PASS")]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == tmp_path.resolve().as_uri() + "/"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]} == {
        illegal_file.as_uri()}  # absolute as given: a file URI, no base


def test_relative_paths_resolve_from_srcroot(tmp_path, monkeypatch, samples):
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/train_gpt.py").write_text(samples.illegal)
    obj = to_obj([audit_paths(["sub"])], root=str(tmp_path))
    validate(obj)
    loc = obj["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "sub/train_gpt.py", "uriBaseId": "SRCROOT"}


def test_examples_sarif_is_small(cli, tmp_path):
    out = tmp_path / "ex.sarif"
    r = cli("audit", "--examples", "--sarif", out, "--exit-zero", "--format", "json")
    assert r.code == 0, r.err
    obj = json.loads(out.read_text())
    assert len(obj["runs"]) == 1 and len(obj["runs"][0]["results"]) == 4
    assert out.stat().st_size < 150_000  # one copy of the rule help, not one per target


def test_decoded_findings_point_at_the_exec_line(write):
    import base64
    import lzma

    inner = ("import requests\n")
    packed = base64.b85encode(lzma.compress(inner.encode())).decode()
    p = write("p/train_gpt.py", f"import lzma, base64\n\nexec(lzma.decompress(base64.b85decode({packed!r})))\n")
    obj = to_obj([audit_paths([p])])
    validate(obj)
    res = next(r for r in obj["runs"][0]["results"] if r["ruleId"] == "PG-NET")
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert res["properties"]["decoded"]["layer"] == 1 and res["properties"]["decoded"]["line"] == 1
    assert "decoded line 1" in res["message"]["text"]


def test_dynamic_failures_are_results_that_say_what_the_leak_is_worth():
    """`audit --dynamic --sarif`: each dynamic check that did not pass is a result on the script; a C3/C4 FAIL's
    message states the leak magnitude and the first violation (figures of a real multi-epoch TTT run)."""
    sentence = "reported 2.1538 bpb; first-look 2.9276 bpb: the leak is worth 0.7738 bpb"
    detail = "position 1: first scored at seq 174, trained on at seq 175, predicted again at seq 306"
    dyn = {"mode": "script", "script": "sub/train_gpt.py", "probes": [],
           "leak": {"reported_loss": 5.16, "first_look_loss": 7.01, "reported_bpb": 2.1538, "first_look_bpb": 2.9276,
                    "worth_bpb": 0.7738, "sentence": sentence},
           "checks": [{"id": "reported-loss", "condition": "C4", "verdict": "FAIL", "first_violation":
                       {"position": 1, "score_seq": 306, "update_seq": 175, "detail": detail},
                       "message": "reported val_loss 5.159837 differs from 7.013697: not the first-pass score"},
                      {"id": "score-before-update", "condition": "C3", "verdict": "FAIL", "first_violation": None,
                       "message": "57 positions were read by an update before they were scored; " + sentence},
                      {"id": "coverage", "condition": "DATA", "verdict": "PASS", "message": "covered",
                       "first_violation": None}]}
    obj = to_obj([AuditResult(target="sub", dynamic=DynamicResult.from_dict(dyn))])
    validate(obj)
    run = obj["runs"][0]
    res = {r["ruleId"]: r for r in run["results"]}
    assert set(res) == {"dynamic/reported-loss", "dynamic/score-before-update"}  # PASS checks are no results
    c4 = res["dynamic/reported-loss"]
    assert c4["level"] == "error" and sentence in c4["message"]["text"] and detail in c4["message"]["text"]
    assert res["dynamic/score-before-update"]["message"]["text"].count(sentence) == 1
    assert c4["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "sub/train_gpt.py"
    rule = run["tool"]["driver"]["rules"][c4["ruleIndex"]]
    assert rule["id"] == "dynamic/reported-loss"
    # the descriptor is the catalogue's entry for the check: its doc and the ruling it cites
    assert rule["properties"]["ruling"]["who"] and "What it flags" in rule["help"]["text"]
    assert c4["partialFingerprints"][FINGERPRINT_KEY]
