"""The shipped CI files: action.yml, the example workflow and .pre-commit-hooks.yaml parse and follow the rules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / "examples" / "workflows" / "parameter-golf-gate.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def load(path: Path):
    # YAML 1.1 reads a bare `on:` key as True; keep the text's own key names
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)


def steps_of(path: Path) -> list[dict]:
    data = load(path)
    if "runs" in data:
        return data["runs"]["steps"]
    return [s for job in data["jobs"].values() for s in job["steps"]]


@pytest.mark.parametrize("path", [ACTION, WORKFLOW, HOOKS], ids=lambda p: p.name)
def test_parses_as_yaml(path):
    assert load(path)


@pytest.mark.parametrize("path", [ACTION, WORKFLOW], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_full_sha_with_a_version_comment(path):
    lines = [m for m in (USES.match(ln) for ln in path.read_text().splitlines()) if m]
    assert lines, "no uses: lines found"
    parsed = [s["uses"] for s in steps_of(path) if "uses" in s]
    assert sorted(parsed) == sorted(m.group(1) for m in lines)
    for m in lines:
        ref, comment = m.group(1), m.group(2)
        name, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{ref} is not pinned to a 40-hex commit SHA"
        assert re.search(r"#\s*v\d", comment), f"{ref} has no version comment"


def test_workflow_is_fork_aware():
    wf = load(WORKFLOW)
    assert set(wf["on"]) == {"pull_request", "workflow_dispatch"}
    code = "\n".join(ln.split("#", 1)[0] for ln in WORKFLOW.read_text().splitlines())
    assert "pull_request_target" not in code and "workflow_run" not in code
    assert wf["on"]["pull_request"]["paths"] == ["records/**"]
    assert wf["permissions"] == {"contents": "read"}
    assert "github.event.pull_request.number" in wf["concurrency"]["group"]
    assert wf["concurrency"]["cancel-in-progress"] == "true"
    job = wf["jobs"]["gate"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["permissions"] == {"contents": "read", "security-events": "write"}
    steps = {s.get("id") or s["name"]: s for s in job["steps"]}
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] == "false" and checkout["with"]["fetch-depth"] == "0"
    upload = next(s for s in job["steps"] if "upload-sarif" in s.get("uses", ""))
    assert "github.event.pull_request.head.repo.full_name == github.repository" in upload["if"]
    assert upload["if"].startswith("always()")
    assert steps["gate"]["with"]["fail"] == "false"
    last = job["steps"][-1]
    assert last["if"] == "always()" and "steps.gate.outputs.exit-code" in last["env"]["CODE"]
    # untrusted PR text never reaches a shell through ${{ }} (script injection)
    for s in job["steps"]:
        if "run" in s:
            assert "${{" not in s["run"]


def test_dynamic_gate_runs_only_when_a_maintainer_starts_it_on_a_gpu_runner():
    wf = load(WORKFLOW)
    job = wf["jobs"]["dynamic"]
    assert job["if"] == "github.event_name == 'workflow_dispatch'"
    assert job["runs-on"] == ["self-hosted", "gpu"] and job["permissions"] == {"contents": "read"}
    run = "\n".join(s["run"] for s in job["steps"] if "run" in s)
    assert "scorefirst gate" in run and "--dynamic" in run and "--gpu" in run
    for s in job["steps"]:
        if "run" in s:
            assert "${{" not in s["run"]  # the PR number reaches the shell through env, validated as digits
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] == "false"


def test_action_runs_the_gate_safely():
    act = load(ACTION)
    assert act["runs"]["using"] == "composite"
    steps = act["runs"]["steps"]
    gate = next(s for s in steps if s.get("id") == "gate")
    for s in steps:
        if "run" in s:
            assert "${{" not in s["run"], "inputs reach the shell through env only"
            assert s["shell"] == "bash"
    assert "GITHUB_STEP_SUMMARY" in gate["run"] and "GITHUB_OUTPUT" in gate["run"]
    assert "--format github" in gate["run"] and "--sarif" in gate["run"] and "--markdown" in gate["run"]
    assert set(act["outputs"]) == {"exit-code", "reason", "json-file", "sarif-file", "markdown-file"}
    for name, spec in act["inputs"].items():
        assert spec["description"], name
    assert {"base", "head", "record-bpb", "record-logs", "config", "fail"} <= set(act["inputs"])


def test_action_flags_match_the_cli():
    """Every option the action passes exists on `scorefirst gate`."""
    from harness.cli import build_parser

    gate = build_parser()._subparsers._group_actions[0].choices["gate"]
    known = {opt for a in gate._actions for opt in a.option_strings}
    gate_step = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "gate")
    used = set(re.findall(r"(--[a-z][a-z-]+)", gate_step["run"]))
    assert {"--base", "--head", "--json", "--sarif", "--markdown", "--format", "--record-bpb"} <= used
    assert used <= known, used - known


def test_pre_commit_hooks():
    hooks = {h["id"]: h for h in load(HOOKS)}
    assert set(hooks) == {"scorefirst-audit", "scorefirst-gate"}
    for h in hooks.values():
        assert {"id", "name", "entry", "language"} <= set(h) and h["language"] == "python"
    audit = hooks["scorefirst-audit"]
    assert audit["entry"].startswith("scorefirst audit")
    rx = re.compile(audit["files"])
    assert rx.search("records/track_10min_16mb/2026-03-23_X/train_gpt.py") and rx.search("train_gpt.py")
    assert not rx.search("records/track_10min_16mb/x/helper.py") and not rx.search("my_train_gpt.py.bak")
    assert hooks["scorefirst-gate"]["pass_filenames"] == "false"
    assert hooks["scorefirst-gate"]["entry"].startswith("scorefirst gate")


def test_pre_commit_audit_hook_entry_runs(cli_proc, write, samples):
    """The hook's entry, with file names appended as pre-commit does, exits 1 on an illegal script."""
    entry = load(HOOKS)[0]["entry"].split()
    assert entry[0] == "scorefirst"
    bad = write("records/track_10min_16mb/x/train_gpt.py", samples.illegal)
    r = cli_proc(*entry[1:], bad)
    assert r.code == 1 and r.last_err_line.startswith("scorefirst: exit 1:")


def test_action_gate_step_runs_in_bash(repo, make, tmp_path, gate_cache):
    """Run the action's gate script as the runner would (env inputs, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    repo.pr(make(), name="pr")
    runner = tmp_path / "runner"
    tool = runner / "scorefirst-venv" / "bin" / "scorefirst"
    tool.parent.mkdir(parents=True)
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m harness "$@"\n')
    tool.chmod(0o755)
    out, summary = tmp_path / "github_output", tmp_path / "summary.md"
    gate_step = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "gate")
    env = dict(os.environ, RUNNER_TEMP=str(runner), GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary),
               PYTHONPATH=str(ROOT), SCOREFIRST_CACHE_DIR=str(gate_cache.directory),
               INPUT_BASE="main", INPUT_HEAD="pr", INPUT_REPO=str(repo.path), INPUT_PR="7", INPUT_RECORD_BPB="1.0",
               INPUT_RECORD_LOGS="", INPUT_CONFIG="", INPUT_OUTPUT_DIR="", INPUT_ANNOTATIONS="true",
               INPUT_STEP_SUMMARY="true", INPUT_FAIL="true")
    proc = subprocess.run(["bash", "-c", gate_step["run"]], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # the record 1.0 bpb is not beaten: blocked
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["exit-code"] == "1" and outputs["reason"].startswith("scorefirst: exit 1: blocked:")
    assert Path(outputs["sarif-file"]).is_file() and Path(outputs["json-file"]).is_file()
    assert summary.read_text().startswith("<!-- scorefirst-gate -->\n## ❌ scorefirst gate: blocked")
    assert "::error file=records/track_10min_16mb/2026-03-25_11L_LegalTTT/submission.json" in proc.stdout
    env["INPUT_FAIL"] = "false"
    proc = subprocess.run(["bash", "-c", gate_step["run"]], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
