"""`scorefirst gate` end to end: exit codes and their last line, every output, annotation caps and escaping."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def args(repo, *extra):
    return ("--repo", repo.path, "--base", "main", "--head", "pr", *extra)


def test_pass_writes_every_output(repo, make, gate_cli, tmp_path):
    sub = make()
    repo.pr(sub)
    j, s, m = tmp_path / "o" / "g.json", tmp_path / "o" / "g.sarif", tmp_path / "o" / "g.md"
    r = gate_cli(*args(repo, "--json", j, "--sarif", s, "--markdown", m, "--pr", "7"))
    assert r.code == 0, r.err
    assert r.last_err_line == f"scorefirst: exit 0: passed: 1 folder ({sub.folder})"
    assert f"{sub.folder} (added): PASS" in r.out
    data = json.loads(j.read_text())
    assert data["schema"] == "scorefirst.gate/1" and data["exit_code"] == 0 and data["pr"] == 7
    (f,) = data["folders"]
    assert f["verdict"] == "pass" and set(f["checks"]) == {"legality", "format", "logs", "budgets", "significance"}
    assert f["audit"]["schema_version"] and f["audit"]["pr_url"].endswith("/pull/7")
    assert [row["seed"] for row in f["seeds"]] == [1337, 2025, 42]
    assert m.read_text().startswith("<!-- scorefirst-gate -->\n## ✅ scorefirst gate: passed")
    sarif = json.loads(s.read_text())
    (run,) = sarif["runs"]
    assert run["automationDetails"]["id"] == f"scorefirst-gate/{sub.folder}/"
    assert run["properties"]["gate"]["verdict"] == "pass"


def test_blocked_outputs_validate_and_locate(repo, make, mkrun, gate_cli, tmp_path, scripts):
    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    sub = make(script=scripts["illegal"], runs=[mkrun(1, 1.89), mkrun(2, 1.89, model_bytes=16_500_000)],
               meta={"val_bpb": "1.1"})
    repo.pr(sub, files={"README.md": "edited\n"})
    s = tmp_path / "g.sarif"
    r = gate_cli(*args(repo, "--sarif", s))
    assert r.code == 1
    assert r.last_err_line == (f"scorefirst: exit 1: blocked: {sub.folder} (legality FAIL, format FAIL, "
                               "budgets FAIL, significance FAIL)")
    doc = json.loads(s.read_text())
    jsonschema.validate(doc, schema)
    (run,) = doc["runs"]
    ids = {res["ruleId"] for res in run["results"]}
    assert {"PG-TTT-001", "PG-FMT", "PG-SIZE-001", "PG-STAT-001"} <= ids
    ttt = next(res for res in run["results"] if res["ruleId"] == "PG-TTT-001")
    loc = ttt["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == f"{sub.folder}/train_gpt.py"
    assert loc["region"]["startLine"] == scripts["illegal_step_line"]
    fmt = [res for res in run["results"] if res["ruleId"] == "PG-FMT"]
    assert {res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for res in fmt} >= {"README.md"}
    assert all(res["partialFingerprints"]["scorefirst-gate/v1"] for res in run["results"] if res["ruleId"] == "PG-FMT")
    rule_ids = [d["id"] for d in run["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    # terminal: located lines, most severe first
    assert f"{sub.folder}/train_gpt.py:{scripts['illegal_step_line']}:" in r.out
    # the launch-era (2026-03-25) schema problem is a warning; the root README edit blocks
    assert f"{sub.folder}/submission.json:" in r.out and "README.md: PG-FMT [error]" in r.out


def test_nothing_to_gate_sarif_still_valid(repo, gate_cli, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    repo.pr(files={"docs/x.md": "x\n"})
    s, m = tmp_path / "g.sarif", tmp_path / "g.md"
    r = gate_cli(*args(repo, "--sarif", s, "--markdown", m))
    assert r.code == 0
    doc = json.loads(s.read_text())
    jsonschema.validate(doc, schema)
    assert doc["runs"][0]["results"] == []
    assert "nothing to gate" in m.read_text()


def test_annotations_are_capped_aggregated_and_escaped(repo, make, mkrun, gate_cli, tmp_path):
    runs = [mkrun(s, 1.89, model_bytes=16_500_000) for s in range(12)]  # 12 logs, each over the size limit
    sub = make(name="2026-03-25_a,b:c%d", runs=runs, meta={"val_bpb": "x", "github_id": "@x", "bytes_total": 1})
    outside = {f".github/file{i:02d}.md": f"{i}\n" for i in range(25)}  # each blocks
    repo.pr(sub, files=outside)
    strict = tmp_path / "strict.toml"  # the current template and consistent metadata, so each problem is an error
    strict.write_text('strict_schema_since = "2026-01-01"\n[tolerance]\nlog_mismatch = "error"\n')
    r = gate_cli(*args(repo, "--format", "github", "--config", strict))
    assert r.code == 1
    lines = r.out.splitlines()
    errors = [ln for ln in lines if ln.startswith("::error ")]
    notices = [ln for ln in lines if ln.startswith("::notice ")]
    assert len(errors) == 10
    # the 25 files outside the folder are one annotation
    (out,) = [ln for ln in errors if ".github/file00.md" in ln]
    assert out.endswith("(+24 more files changed outside the submission folder)")
    assert not [ln for ln in errors if ".github/file01.md" in ln]
    # one annotation per rule and file: the two schema errors of submission.json are one
    folder = "records/track_10min_16mb/2026-03-25_a%2Cb%3Ac%25d"  # property values escape , : and %
    (sj,) = [ln for ln in errors if f"file={folder}/submission.json,line=" in ln and "PG-FMT" in ln]
    assert sj.endswith("(+1 more like this in this file)")
    assert any(f"file={folder}/submission.json" in ln and "PG-LOG" in ln for ln in errors)  # bytes_total
    shown = sum(1 for ln in errors if f"file={folder}/train_seed" in ln)
    assert shown == 7  # 12 oversize logs; 3 annotations went to the problems above
    assert notices[-1].endswith(f"::{12 - shown} more problems not shown as annotations (GitHub shows at most 10 "
                                "per level and step); see the job summary or the JSON/SARIF report")
    assert len(notices) <= 10 and all(len(ln.split("::")) >= 3 for ln in lines)
    verdict = next(ln for ln in notices if "blocked" in ln)
    assert "2026-03-25_a,b:c%25d: blocked" in verdict  # message data: only % (and CR, LF) escaped
    assert "2026-03-25_a%2Cb%3Ac%25d" not in verdict


def test_markdown_escapes_hostile_names(repo, make, gate_cli, tmp_path):
    sub = make(name="2026-03-25_<script>x|@admin")
    repo.pr(sub, files={"README.md": "x\n"})
    m = tmp_path / "g.md"
    r = gate_cli(*args(repo, "--markdown", m, "--format", "markdown"))
    assert r.code == 1
    text = m.read_text()
    assert r.out == text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "@admin" not in text and "&#64;admin" in text
    assert "x\\|" in text  # a | in a name cannot break the table
    assert text.count("<details") == text.count("</details>") == 1


def test_markdown_is_capped_for_pr_comments(repo, make, gate_cli, tmp_path):
    subs = [make(name=f"2026-03-{i:02d}_Folder_{'x' * 60}") for i in range(1, 29)]
    files = {}
    for s in subs:
        files.update(s.files())
    files.update({f".github/f{i:03d}.md": "x\n" for i in range(60)})
    repo.pr(files=files)
    m = tmp_path / "g.md"
    r = gate_cli(*args(repo, "--markdown", m, "--format", "json"))
    assert r.code == 1
    text = m.read_text()
    assert len(text) < 65_536 and text.startswith("<!-- scorefirst-gate -->")
    assert "more in the JSON/SARIF report" in text or "truncated" in text
    assert json.loads(r.out)["exit_code"] == 1


def test_unwritable_output_is_exit_2(repo, make, gate_cli, tmp_path):
    repo.pr(make())
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = gate_cli(*args(repo, "--json", blocker / "x.json"))
    assert r.code == 2 and r.last_err_line.startswith(f"scorefirst: exit 2: cannot write {blocker / 'x.json'}")


def test_unauditable_script_blocks_with_location(repo, make, gate_cli):
    sub = make(script="import os\ndef broken(:\n    pass\n")
    repo.pr(sub)
    r = gate_cli(*args(repo))
    assert r.code == 1
    assert f"{sub.folder}/train_gpt.py:2:" in r.out and "cannot be audited as submitted" in r.out


def test_audit_internal_error_is_exit_2(repo, make, gate_cli, monkeypatch):
    import audits.api

    def boom(src, env):
        return audits.api._error(src.path, "internal", f"{src.path}: internal error: RuntimeError: boom")

    monkeypatch.setattr(audits.api, "audit_one", boom)
    sub = make(script="import os\nprint('fresh')\n")  # not in the cache
    repo.pr(sub)
    r = gate_cli(*args(repo, "--no-cache"))
    assert r.code == 2
    assert r.last_err_line.startswith(f"scorefirst: exit 2: could not judge {sub.folder}: {sub.folder}/train_gpt.py: "
                                      "could not audit")


def test_help_documents_checks_and_exit_codes(gate_cli):
    r = gate_cli("--help")
    assert r.code == 0
    for word in ("legality", "format", "logs", "budgets", "significance", "exit codes:", "--record-bpb",
                 "--record-logs", "--config", "--markdown", "--sarif"):
        assert word in r.out


def test_gate_never_imports_torch(repo, make, tmp_path):
    repo.pr(make())
    probe = ("import sys; from harness.cli import main; code = main(['gate', '--repo', sys.argv[1], '--base', 'main',"
             " '--head', 'pr', '--no-cache', '--record-bpb', '1.2']); "
             "sys.stderr.write('TORCH=%s\\n' % ('torch' in sys.modules)); sys.exit(code)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", probe, str(repo.path)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH=False" in proc.stderr


def test_html_report_when_the_reports_package_is_there(repo, make, gate_cli, tmp_path):
    pytest.importorskip("reports.render")
    sub = make()
    repo.pr(sub)
    out = tmp_path / "html"
    r = gate_cli(*args(repo, "--html", out))
    assert r.code == 0, r.err
    assert (out / "index.html").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = gate_cli(*args(repo, "--html", blocker / "x"))
    assert r.code == 2 and "cannot write the HTML report" in r.last_err_line


def test_html_report_shows_the_budgets_figures_and_marks_what_it_blocks(repo, make, mkrun, gate_cli, tmp_path):
    """The report's train/eval cells are the budgets check's figures (calibration and the TTT phase counted), marked
    over exactly where that check fails: on the timed track, not on the untimed one."""
    pytest.importorskip("reports.render")
    runs = [mkrun(1, 1.89, train_ms=598_000, calibration_s=4.2, eval_ms=(74_000, 500_000), ttt_phase_s=30.0),
            mkrun(2, 1.89), mkrun(3, 1.89)]
    for track, mark in (("track_10min_16mb", " over"), ("track_non_record_16mb", "")):
        repo.pr(make(track=track, runs=runs), name=track)
        out, j = tmp_path / track, tmp_path / f"{track}.json"
        gate_cli("--repo", repo.path, "--base", "main", "--head", track, "--html", out, "--json", j)
        (f,) = json.loads(j.read_text())["folders"]
        budgets = f["checks"]["budgets"]
        assert max(budgets["data"]["train_s"]) == pytest.approx(602.2)  # 598.0 s loop + 4.2 s GPTQ calibration
        assert max(budgets["data"]["eval_s"]) == pytest.approx(604.0)  # 74 + 500 s of stages + the 30 s TTT phase
        timing = {m["rule"] for m in budgets["messages"] if m["rule"].startswith("PG-TIME")}
        assert timing == ({"PG-TIME-TRAIN", "PG-TIME-EVAL"} if mark else set())
        row = next(r for r in (out / "index.html").read_text().split("<tr ") if f["folder"] in r)
        assert re.findall(r'<td class="num( over)?"[^>]*>([\d.]+ s)</td>', row) == [(mark, "602.2 s"),
                                                                                    (mark, "604.0 s")]


@pytest.mark.parametrize("name,code,rule", [("2026-03-23_11L_LeakyReLU_XSA4_LegalTTT", 0, None),
                                            ("2026-03-28_11L_EvalTTT_EnvGated", 1, "PG-TTT-001")])
def test_bundled_example_submission_as_a_pr(repo, gate_cli, scripts, name, code, rule, tmp_path):
    """A PR adding a bundled example folder: the legal TTT record passes, the env-gated pre-eval TTT is blocked."""
    src = scripts["examples"] / name
    folder = f"records/track_10min_16mb/{name}"
    repo.pr(files={f"{folder}/{p.name}": p.read_bytes() for p in src.iterdir() if p.is_file()})
    j = tmp_path / "g.json"
    r = gate_cli(*args(repo, "--json", j))
    assert r.code == code, r.err
    (f,) = json.loads(j.read_text())["folders"]
    assert {n: c["status"] for n, c in f["checks"].items() if n != "legality"} == {
        "format": "PASS", "logs": "PASS", "budgets": "PASS", "significance": "PASS"}
    if rule:
        assert f["checks"]["legality"]["status"] == "FAIL"
        assert r.last_err_line == f"scorefirst: exit 1: blocked: {folder} (legality FAIL)"
        assert any(m["rule"] == rule and m["path"] == f"{folder}/train_gpt.py" and m["line"] > 0
                   for m in f["checks"]["legality"]["messages"])
    else:
        assert f["checks"]["legality"]["status"] == "PASS"
