"""`scorefirst audit --dynamic`: the dynamic section's exact shape, static/dynamic agreement surfaced in the
terminal and the JSON, PG-NET findings from blocked network attempts, exit codes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from audits.results import AuditResult
from harness import sandbox
from harness.crosscheck import agreement, dynamic_verdicts
from audits.dynamic_result import (Agreement, Check, DynamicResult, Probe, SandboxInfo, Timeline, TimelineEvent,
                                    Violation)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"
needs_sandbox = pytest.mark.skipif(not sandbox.available("bwrap"),
                                   reason=f"no sandbox here ({sandbox.BWRAP_APT})")

V = {"PASS", "WARN", "FAIL"}


def _num(x):
    return x is None or isinstance(x, (int, float)) and not isinstance(x, bool)


def assert_dynamic_shape(d: dict) -> None:
    """The contract with the HTML report (audits/dynamic_result.py), key for key."""
    assert set(d) == {"mode", "script", "ledger", "reported", "reconstructed", "leak", "checks", "probes",
                      "timeline", "agreement", "sandbox", "verdict"}
    assert d["mode"] in ("reference", "script") and (d["script"] is None or isinstance(d["script"], str))
    led = d["ledger"]
    assert set(led) == {"positions", "events", "score_events", "update_events", "complete", "path"}
    assert all(isinstance(led[k], int) for k in ("positions", "events", "score_events", "update_events"))
    assert isinstance(led["complete"], bool) and (led["path"] is None or isinstance(led["path"], str))
    for k in ("reported", "reconstructed"):
        assert set(d[k]) == {"val_loss", "val_bpb"} and all(_num(v) for v in d[k].values())
    leak = d["leak"]
    assert leak is None or (set(leak) == {"reported_loss", "first_look_loss", "reported_bpb", "first_look_bpb",
                                          "worth_bpb", "sentence"} and isinstance(leak["sentence"], str)
                            and all(_num(leak[k]) for k in leak if k != "sentence"))
    for c in d["checks"]:
        assert set(c) == {"id", "condition", "verdict", "message", "first_violation"}
        assert c["condition"] in {"C1", "C2", "C3", "C4", "DATA", "BYTES"} and c["verdict"] in V
        fv = c["first_violation"]
        if fv is not None:
            assert set(fv) == {"position", "score_seq", "update_seq", "detail"} and isinstance(fv["position"], int)
    for p in d["probes"]:
        assert set(p) == {"name", "condition", "verdict", "probed", "max_abs_diff", "message"}
        assert p["name"] in ("future-perturbation", "normalization") and p["condition"] in ("C1", "C2")
        assert p["verdict"] in V and _num(p["max_abs_diff"])
    tl = d["timeline"]
    assert set(tl) == {"positions", "max_seq", "downsampled", "events", "violations"}
    assert len(tl["events"]) <= 2100
    for e in tl["events"]:
        assert set(e) == {"kind", "seq", "start", "stop"} and e["kind"] in ("score", "update")
    for v in tl["violations"]:
        assert set(v) == {"position", "score_seq", "update_seq"}
    for a in d["agreement"]:
        assert set(a) == {"condition", "static", "dynamic", "agree"}
        assert a["static"] in V | {None} and a["dynamic"] in V | {None} and a["agree"] in (True, False, None)
    sb = d["sandbox"]
    if sb is not None:
        assert set(sb) == {"isolation", "network", "wall_seconds", "exit_code", "limits", "network_attempts",
                           "killed", "write_attempts"}
        assert set(sb["limits"]) == {"cpu_seconds", "memory_mb", "wall_seconds", "disk_mb"}
    assert set(d["verdict"]) == {"conditions", "overall"} and set(d["verdict"]["conditions"]) == {"C1", "C2", "C3",
                                                                                                 "C4"}
    assert d["verdict"]["overall"] in V
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN or infinity anywhere


def _sample() -> DynamicResult:
    return DynamicResult(
        mode="script", script="x/train_gpt.py", ledger={"positions": 10, "events": 3, "score_events": 1,
                                                        "update_events": 1, "complete": True, "path": None},
        reported={"val_loss": 1.0, "val_bpb": float("nan")}, reconstructed={"val_loss": 1.5, "val_bpb": None},
        checks=[Check("score-before-update", "C3", "FAIL", "m", Violation(3, 5, 2, "d")),
                Check("coverage", "DATA", "WARN", "w")],
        probes=[Probe("future-perturbation", "C1", "PASS", "p", 0.0, "ok")],
        timeline=Timeline(10, 5, False, [TimelineEvent("score", 1, 1, 10)], [(3, 5, 2)]),
        agreement=[Agreement("C3", "PASS", "FAIL")],
        sandbox=SandboxInfo("bwrap", "none (empty network namespace)", 1.23456, 0,
                            {"cpu_seconds": 10, "memory_mb": 100, "wall_seconds": 20}, ["connect 1.1.1.1:80"]))


def test_shape_and_round_trip():
    d = _sample().to_dict()
    assert_dynamic_shape(d)
    assert d["reported"]["val_bpb"] is None  # NaN never reaches the JSON
    assert d["verdict"] == {"conditions": {"C1": "PASS", "C2": None, "C3": "FAIL", "C4": None}, "overall": "FAIL"}
    assert d["agreement"] == [{"condition": "C3", "static": "PASS", "dynamic": "FAIL", "agree": False}]
    assert DynamicResult.from_dict(d).to_dict() == d
    result = AuditResult(target="x", dynamic=_sample())
    assert AuditResult.from_dict(json.loads(json.dumps(result.to_dict()))).dynamic.to_dict() == d


def test_crosscheck_rows_and_net_from_the_sandbox():
    dyn = _sample()
    static = AuditResult(target="x")
    rows = {a.condition: a for a in agreement(static, dyn)}
    assert rows["C3"].static == "PASS" and rows["C3"].dynamic == "FAIL" and rows["C3"].agree is False
    assert rows["C1"].agree is True and rows["CAL"].dynamic is None and rows["CAL"].agree is None
    assert rows["NET"].dynamic == "FAIL" and rows["DATA"].dynamic == "WARN"
    dyn.sandbox.network_attempts = []
    assert dynamic_verdicts(dyn)["NET"] == "PASS"
    dyn.sandbox = None
    assert dynamic_verdicts(dyn)["NET"] is None


def test_an_untrusted_guard_record_fails_data_and_proves_no_net_pass():
    from types import SimpleNamespace

    from harness.dynamic import guard_checks

    assert guard_checks(SimpleNamespace(guard_problems=[], guarded=2)) == []
    silent = guard_checks(SimpleNamespace(guard_problems=[], guarded=0))
    assert silent[0].verdict == "FAIL" and "guard was not installed" in silent[0].message
    dyn = _sample()
    dyn.sandbox.network_attempts = []
    dyn.checks += guard_checks(SimpleNamespace(guard_problems=["1 line(s) ... the script wrote into it"], guarded=1))
    assert dynamic_verdicts(dyn)["NET"] == "WARN" and dynamic_verdicts(dyn)["DATA"] == "FAIL"


@needs_sandbox
def test_audit_dynamic_end_to_end(cli, tmp_path, ref_data, monkeypatch):
    """The static auditor cannot see this fixture's pre-eval TTT (its evaluation is in a helper module that cannot
    be linked with it, so it only warns, SF-IMPORT-001); the dynamic audit proves it, and the disagreement is
    printed, not resolved."""
    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", str(Path(ref_data[0]).parents[3]))  # the prepared default corpus
    out, sarif = tmp_path / "r.json", tmp_path / "r.sarif"
    run = cli("audit", "--dynamic", FIXTURES / "illegal_pre_eval_ttt_unlinked.py", "--val-tokens", "1024", "--iterations",
              "6", "--no-probes", "--json", out, "--sarif", sarif, "--no-cache", "--ledger-dir", tmp_path / "ledgers")
    assert run.code == 1, run.err
    assert "dynamic audit:" in run.out and "score-before-update" in run.out and "first violation: position 1" in run.out
    assert "static vs dynamic: " in run.out and "C3 WARN/FAIL DISAGREE" in run.out
    assert "DISAGREE C3: static WARN, dynamic FAIL -- a person should look" in run.out
    assert "dynamic audit: C3 FAIL" in run.last_err_line
    whole = json.loads(out.read_text())
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parents[2] / "audits" / "schemas" / "result.schema.json").read_text())
    jsonschema.validate(whole, schema)
    d = whole["dynamic"]
    assert_dynamic_shape(d)
    assert d["verdict"]["conditions"]["C3"] == "FAIL"
    assert {a["condition"]: a["agree"] for a in d["agreement"]}["C3"] is False
    assert Path(d["ledger"]["path"]).is_dir() and str(tmp_path / "ledgers") in d["ledger"]["path"]
    # the SARIF view names the same C3 FAIL on the script, with its first violation and what the leak is worth
    run_ = json.loads(sarif.read_text())["runs"][0]
    c3 = next(c for c in d["checks"] if c["id"] == "score-before-update")
    res = next(r for r in run_["results"] if r["ruleId"] == "dynamic/score-before-update")
    assert res["level"] == "error" and d["leak"]["sentence"] in res["message"]["text"]
    assert "the leak is worth" in res["message"]["text"] and c3["first_violation"]["detail"] in res["message"]["text"]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("illegal_pre_eval_ttt_unlinked.py")
    assert run_["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == "dynamic/score-before-update"


@needs_sandbox
def test_network_attempt_becomes_a_pg_net_finding(cli, tmp_path, ref_data, monkeypatch):
    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", str(Path(ref_data[0]).parents[3]))
    script = tmp_path / "sub" / "train_gpt.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent("""\
        import socket
        try:
            socket.create_connection(("203.0.113.7", 443), timeout=2)
        except OSError as e:
            print("download failed", e)
        print("final val_loss:1.0 val_bpb:1.0")
    """))
    out = tmp_path / "r.json"
    run = cli("audit", "--dynamic", script.parent, "--val-tokens", "1024", "--iterations", "2", "--no-probes",
              "--json", out, "--no-cache")
    assert run.code == 1
    assert "PG-NET blocked: connect 203.0.113.7:443" in run.out
    data = json.loads(out.read_text())
    nets = [f for fr in data["files"] for f in fr["findings"] if f["rule_id"] == "PG-NET"]
    assert any("203.0.113.7:443" in f["message"] and "dynamic run" in f["message"] for f in nets)
    assert data["dynamic"]["sandbox"]["network_attempts"] == ["connect 203.0.113.7:443"]
    rows = {a["condition"]: a for a in data["dynamic"]["agreement"]}
    assert rows["NET"]["dynamic"] == "FAIL" and rows["NET"]["static"] == "FAIL" and rows["NET"]["agree"] is True
    static_net = [f for f in nets if "dynamic run" not in f["message"]]
    assert static_net  # the static audit saw the socket too: both sides agree


def test_dynamic_without_a_sandbox_is_a_clear_error(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "available", lambda kind: False)
    (tmp_path / "t.py").write_text("print(1)\n")
    run = cli("audit", "--dynamic", tmp_path / "t.py", "--no-cache")
    assert run.code == 2 and "bubblewrap is not available" in run.last_err_line and "--sandbox" in run.last_err_line
