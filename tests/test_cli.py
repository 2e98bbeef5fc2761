"""The command line: help, version, rules, exit codes and their last line, several outputs in one run."""
from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from audits.registry import all_rules, catalogue

REPO = Path(__file__).resolve().parents[1]


def test_version_matches_pyproject(cli):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    r = cli("--version")
    assert r.code == 0
    assert r.out.startswith(f"scorefirst {version} ")
    assert "libcst" in r.out and "3.12" in r.out


def test_help_documents_exit_codes(cli):
    for args in (["--help"], ["audit", "--help"]):
        r = cli(*args)
        assert r.code == 0
        assert "exit codes:" in r.out and "--exit-zero never masks it" in r.out
    assert "--sarif" in cli("audit", "--help").out


def test_python_m_harness_runs_without_torch(cli_proc, illegal_file):
    r = cli_proc("--version")
    assert r.code == 0 and r.out.startswith("scorefirst ")
    # The audit path never imports torch, even when the audited script does.
    probe = ("import sys; from harness.cli import main; code = main(['audit', sys.argv[1], '--no-cache']); "
             "sys.stderr.write('TORCH=%s\\n' % ('torch' in sys.modules)); sys.exit(code)")
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", probe, str(illegal_file)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "TORCH=False" in proc.stderr


def test_no_command_is_a_usage_error(cli):
    r = cli()
    assert r.code == 2
    assert r.last_err_line.startswith("scorefirst: exit 2: usage error")


def test_rules_lists_every_rule(cli):
    r = cli("rules")
    assert r.code == 0
    for rule in catalogue():
        line = next(ln for ln in r.out.splitlines() if ln.startswith(rule.id + " "))
        assert rule.name in line and rule.severity.value in line and rule.kind in line
        assert ",".join(c.value for c in rule.conditions) in line
    data = json.loads(cli("rules", "--format", "json").out)
    assert [d["id"] for d in data] == [r.id for r in catalogue()]
    assert {r.id for r in all_rules()} <= {d["id"] for d in data}
    assert all(d["ruling"]["who"] and d["doc"] for d in data)
    md = cli("rules", "--format", "markdown").out
    assert md.startswith("| id | kind | name |") and md.count("\n") == len(catalogue()) + 2


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_rules_one_rule_has_doc_and_ruling(cli, fmt):
    rule = next(r for r in all_rules() if r.id == "PG-TTT-001")
    r = cli("rules", "PG-TTT-001", "--format", fmt)
    assert r.code == 0
    assert rule.ruling.quote[:40] in r.out
    if fmt != "json":
        assert "What it flags" in r.out and "Use instead" in r.out


def test_rules_unknown_id(cli):
    r = cli("rules", "PG-NOPE-999")
    assert r.code == 2
    assert "unknown rule 'PG-NOPE-999'" in r.last_err_line


# --- exit codes ----------------------------------------------------------------------------------------------


def test_exit_1_on_findings_with_reason(cli, illegal_file):
    r = cli("audit", illegal_file)
    assert r.code == 1
    assert r.last_err_line == "scorefirst: exit 1: 2 findings at or above error (C3 FAIL, NET FAIL)"
    assert "Traceback" not in r.err


def test_exit_0_on_clean(cli, clean_file):
    r = cli("audit", clean_file)
    assert r.code == 0
    assert r.last_err_line == "scorefirst: exit 0: no findings at or above error (overall PASS)"


def test_exit_zero_forces_0_but_says_why(cli, illegal_file):
    r = cli("audit", illegal_file, "--exit-zero")
    assert r.code == 0
    assert r.last_err_line.startswith("scorefirst: exit 0: 2 findings at or above error")
    assert r.last_err_line.endswith("--exit-zero")


def test_exit_zero_never_masks_2(cli, illegal_file, write):
    bad = write("broken.py", "def f(:\n")
    r = cli("audit", illegal_file, bad, "--exit-zero")
    assert r.code == 2
    assert r.last_err_line.startswith("scorefirst: exit 2: 1 file could not be audited: ")
    # the other target was still audited and printed
    assert f"{illegal_file.as_posix()}:2:1: PG-NET [error]" in r.out.replace("\\", "/")


def test_fail_on_warning_and_info(cli, write):
    # An unresolvable exec is a WARNING finding (cannot verify).
    p = write("w.py", "import sys\nexec(sys.argv[1])\n")
    assert cli("audit", p).code == 0
    r = cli("audit", p, "--fail-on", "warning")
    assert r.code == 1
    assert "at or above warning" in r.last_err_line and "WARN" in r.last_err_line


def test_env_disables_code_path(cli, illegal_file):
    r = cli("audit", illegal_file, "--env", "TTT_ENABLED=0", "--format", "json")
    data = json.loads(r.out)
    statuses = {f["rule_id"]: f["status"] for f in data["files"][0]["findings"]}
    assert statuses["PG-TTT-001"] == "inactive"
    assert data["env"] == [{"key": "TTT_ENABLED", "value": "0", "source": "--env"}]
    assert data["verdict"]["conditions"]["C3"] == "PASS"


def test_readme_run_command_is_the_environment(cli, write, samples):
    write("sub/train_gpt.py", samples.illegal)
    readme = write("sub/README.md", "# run\n\n```\nTTT_ENABLED=0 torchrun --nproc_per_node=8 train_gpt.py\n```\n")
    r = cli("audit", readme.parent, "--format", "json")
    data = json.loads(r.out)
    assert data["env"] == [{"key": "TTT_ENABLED", "value": "0",
                            "source": f"{readme.parent.as_posix()}/README.md:4"}]
    assert data["verdict"]["conditions"]["C3"] == "PASS"
    # --env states the run and overrides the README
    data = json.loads(cli("audit", readme.parent, "--format", "json", "--env", "TTT_ENABLED=1").out)
    assert data["verdict"]["conditions"]["C3"] == "FAIL"


def test_bad_env_is_usage_error(cli, illegal_file):
    r = cli("audit", illegal_file, "--env", "NOEQUALS")
    assert r.code == 2
    assert r.last_err_line == "scorefirst: exit 2: usage error: --env expects KEY=VALUE, got 'NOEQUALS'"


@pytest.mark.parametrize("args,msg", [
    (["audit"], "audit needs a PATH"),
    (["audit", "x.py", "--repo", "."], "one of them"),
    (["audit", "--repo", "."], "--repo needs --pr"),
    (["audit", "x.py", "--jobs", "0"], "expected a positive integer"),
    (["audit", "x.py", "--format", "xml"], "invalid choice"),
])
def test_usage_errors(cli, args, msg):
    r = cli(*args)
    assert r.code == 2
    assert r.last_err_line.startswith("scorefirst: exit 2: usage error") and msg in r.last_err_line


def test_pr_label(cli, illegal_file):
    data = json.loads(cli("audit", illegal_file, "--pr", "605", "--format", "json").out)
    assert data["pr"] == 605
    assert data["pr_url"] == "https://github.com/openai/parameter-golf/pull/605"
    assert "(PR #605 https://github.com/openai/parameter-golf/pull/605)" in cli("audit", illegal_file, "--pr", "605").out


# --- several outputs in one run ----------------------------------------------------------------------------


def test_json_sarif_and_stdout_in_one_run(cli, illegal_file, tmp_path):
    j, s = tmp_path / "out" / "r.json", tmp_path / "out" / "r.sarif"
    r = cli("audit", illegal_file, "--json", j, "--sarif", s, "--format", "github")
    assert r.code == 1
    assert json.loads(j.read_text())["verdict"]["overall"] == "FAIL"
    assert json.loads(s.read_text())["version"] == "2.1.0"
    assert r.out.startswith("::error ")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_several_targets_give_a_results_list(cli, illegal_file, clean_file, tmp_path):
    j, s = tmp_path / "r.json", tmp_path / "r.sarif"
    cli("audit", illegal_file.parent, clean_file.parent, "--json", j, "--sarif", s)
    data = json.loads(j.read_text())
    assert [r["target"] for r in data["results"]] == [illegal_file.parent.as_posix(), clean_file.parent.as_posix()]
    assert [r["verdict"]["overall"] for r in data["results"]] == ["FAIL", "PASS"]
    run, = json.loads(s.read_text())["runs"]  # one run for every target
    assert [t["target"] for t in run["properties"]["targets"]] == [r["target"] for r in data["results"]]


def test_unwritable_output_is_exit_2_and_other_outputs_survive(cli, illegal_file, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    s = tmp_path / "r.sarif"
    r = cli("audit", illegal_file, "--json", blocker / "r.json", "--sarif", s, "--exit-zero")
    assert r.code == 2
    assert "cannot write" in r.last_err_line and str(blocker / "r.json") in r.last_err_line
    assert json.loads(s.read_text())["runs"]


def test_write_atomic_keeps_old_file_on_failure(tmp_path, monkeypatch):
    import os

    from audits.outputs import write_atomic

    target = tmp_path / "r.json"
    target.write_text("old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_examples_each_folder_is_a_target(cli, tmp_path):
    import audits

    records = Path(audits.__file__).parent / "examples" / "records"
    j = tmp_path / "ex.json"
    r = cli("audit", "--examples", "--json", j, "--exit-zero", "--format", "concise")
    if not records.is_dir():
        assert r.code == 2 and "no bundled example submissions" in r.last_err_line
        return
    assert r.code in (0, 2)
    data = json.loads(j.read_text())
    results = data["results"] if "results" in data else [data]
    folders = sorted({p.parent for p in records.rglob("*.py")})
    assert len(results) == len(folders)
    # printed paths resolve from where the command ran
    assert sorted(res["target"] for res in results) == sorted(os.path.relpath(f) for f in folders)
    assert all(Path(f["path"]).is_file() for res in results for f in res["files"])


def test_internal_error_is_one_line(cli, illegal_file, monkeypatch):
    import harness.run

    def explode(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(harness.run, "audit_targets", explode)
    r = cli("audit", illegal_file)
    assert r.code == 2
    assert r.last_err_line == "scorefirst: exit 2: internal error: RuntimeError: boom second line"
    assert "Traceback" not in r.err


def test_analyzer_bug_in_one_file_keeps_the_others(cli, illegal_file, clean_file, monkeypatch):
    import audits.engine

    real = audits.engine.audit_source

    def flaky(src, env):
        if "clean" in src.path:
            raise ZeroDivisionError("division by zero")
        return real(src, env)

    monkeypatch.setattr(audits.engine, "audit_source", flaky)
    r = cli("audit", illegal_file, clean_file, "--jobs", "1", "--no-cache")
    assert r.code == 2
    assert re.search(r"internal error: ZeroDivisionError: division by zero", r.last_err_line)
    assert "PG-TTT-001" in r.out


def test_incomplete_message_when_nothing_was_audited(cli, write):
    p = write("bin/train_gpt.py", b"\x00\x01binary")
    r = cli("audit", p)
    assert r.code == 2
    assert r.out.splitlines()[-1] == (f"{p.as_posix()}: 0 findings (0 error, 0 warning, 0 info) -> INCOMPLETE: 1 file "
                                      "not audited and nothing else to audit: no verdict")


def test_incomplete_message_names_what_was_audited(cli, write, samples):
    write("mix/a.py", samples.clean)
    write("mix/b.py", b"\x00\x01binary")
    r = cli("audit", write("mix/c.py", samples.clean).parent)
    assert r.out.splitlines()[-1].endswith("-> INCOMPLETE: 1 file not audited; the other 2 files: overall PASS")


def test_pr_before_a_path_labels_it(cli, illegal_file, tmp_path):
    j = tmp_path / "o.json"
    r = cli("audit", "--pr", "605", illegal_file, "--json", j)
    assert r.code == 1, r.err
    data = json.loads(j.read_text())
    assert data["pr"] == 605 and data["target"] == illegal_file.as_posix()


def test_pr_must_be_a_number(cli, illegal_file):
    for bad in ("x", "0"):
        r = cli("audit", illegal_file, "--pr", bad)
        assert r.code == 2 and r.last_err_line == (f"scorefirst: exit 2: usage error: argument --pr: expected a "
                                                   f"positive integer, got '{bad}'")
