"""`scorefirst sweep` and the shared PR resolution, on real local git repositories with pull refs (no mocked git).

The competition repository built here has an open PR with train-then-score TTT, a closed PR that forked it
(locals renamed, numbers retuned, comments and layout changed), a merged PR (merge commit) with legal code, a
PR that changes nothing under records/, and an unrelated illegal PR with different code.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACK = "records/track_10min_16mb"

ORIGINAL = textwrap.dedent('''\
    import os
    import torch

    def ttt_adapt(model, opt, val_tokens):
        for epoch in range(3):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward()
            opt.step()

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    def build_schedule(total, warmup):
        steps = []
        for i in range(total):
            frac = min(1.0, i / max(1, warmup))
            steps.append(frac)
        return steps

    def clip_all(params, limit):
        norms = []
        for p in params:
            n = p.norm()
            norms.append(n)
        return max(norms)

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    if int(os.environ.get("TTT_ENABLED", "1")):
        ttt_adapt(model, opt, val_tokens)
    print(eval_val(model, val_tokens))
''')
ORIGINAL_TTT_LINE = 8  # opt.step()

# The fork: same code, locals renamed, numbers retuned, comments and blank lines added.
FORK = textwrap.dedent('''\
    import os
    import torch
    # forked from the open PR, tuned


    def ttt_adapt(net, optimizer, toks):
        # adapt on the validation stream
        for ep in range(6):
            l = net(toks[:-1], toks[1:])
            l.backward()
            optimizer.step()

    def eval_val(net, toks):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += net(toks[:-1], toks[1:]).item()
        return loss_sum

    def build_schedule(n_steps, wu):
        out = []
        for k in range(n_steps):
            f = min(1.0, k / max(1, wu))
            out.append(f)
        return out

    def clip_all(ps, lim):
        acc = []
        for q in ps:
            v = q.norm()
            acc.append(v)
        return max(acc)

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    if int(os.environ.get("TTT_ENABLED", "1")):
        ttt_adapt(model, opt, val_tokens)
    print(eval_val(model, val_tokens))
''')
FORK_TTT_LINE = 11

LEGAL = textwrap.dedent('''\
    import torch

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    print(eval_val(model, val_tokens))
''')

# Illegal too, but different code: trains on the whole split in a differently written loop.
OTHER = textwrap.dedent('''\
    import torch

    def warm(model, opt, val_tokens, steps):
        i = 0
        while i < steps:
            opt.zero_grad()
            model(val_tokens[:-1], val_tokens[1:]).backward()
            opt.step()
            i += 1

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    warm(model, opt, val_tokens, 10)
    print(eval_val(model, val_tokens))
''')


def git(cwd: Path, *args: str, date: str = "2026-03-01T12:00:00Z") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def put(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def pr(repo: Path, n: int, files: dict[str, str], date: str, base: str = "main") -> None:
    git(repo, "checkout", "-q", "-b", f"pr{n}", base)
    for rel, text in files.items():
        put(repo, rel, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"PR {n}", date=date)
    git(repo, "update-ref", f"refs/pull/{n}/head", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "main")


@pytest.fixture
def competition(tmp_path):
    return build_competition(tmp_path)


def build_competition(tmp_path: Path) -> Path:
    repo = tmp_path / "parameter-golf"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    put(repo, "README.md", "parameter golf\n")
    put(repo, f"{TRACK}/2026-01-01_Baseline/train_gpt.py", LEGAL)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base", date="2026-02-01T00:00:00Z")
    pr(repo, 10, {f"{TRACK}/2026-03-02_EpochTTT/train_gpt.py": ORIGINAL,
                  f"{TRACK}/2026-03-02_EpochTTT/submission.json": json.dumps({"val_bpb": 1.0512})},
       "2026-03-02T10:00:00Z")
    pr(repo, 11, {f"{TRACK}/2026-03-12_EpochTTT_Tuned/train_gpt.py": FORK,
                  f"{TRACK}/2026-03-12_EpochTTT_Tuned/submission.json": json.dumps({"val_bpb": 1.0498})},
       "2026-03-12T10:00:00Z")
    pr(repo, 12, {f"{TRACK}/2026-03-05_Legal/train_gpt.py": LEGAL,
                  f"{TRACK}/2026-03-05_Legal/submission.json": json.dumps({"val_bpb": 1.09})},
       "2026-03-05T10:00:00Z")
    pr(repo, 13, {"docs/notes.md": "no records here\n"}, "2026-03-06T10:00:00Z")
    pr(repo, 14, {f"{TRACK}/2026-03-20_Warm/train_gpt.py": OTHER}, "2026-03-20T10:00:00Z")
    # PR 12 is merged with a merge commit; main moves on afterwards
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #12", "pr12", date="2026-03-07T00:00:00Z")
    put(repo, "README.md", "parameter golf, later\n")
    git(repo, "commit", "-q", "-am", "later", date="2026-03-08T00:00:00Z")
    return repo


@pytest.fixture
def metadata(tmp_path):
    return write_metadata(tmp_path)


def write_metadata(tmp_path: Path, hostile_title: str = "Record: epoch TTT, tuned") -> Path:
    rows = [
        {"number": 10, "title": "Record: epoch TTT", "author": {"login": "alice"}, "state": "OPEN",
         "createdAt": "2026-03-02T10:00:00Z", "mergedAt": None, "url": "https://example.invalid/pull/10"},
        {"number": 11, "title": hostile_title, "author": {"login": "bob"}, "state": "CLOSED",
         "createdAt": "2026-03-12T10:00:00Z", "mergedAt": None},
        {"number": 12, "title": "Legal record", "author": {"login": "carol"}, "state": "MERGED",
         "createdAt": "2026-03-05T10:00:00Z", "mergedAt": "2026-03-07T00:00:00Z"},
    ]
    p = tmp_path / "prs.json"
    p.write_text(json.dumps(rows))
    return p


def sweep(cli, repo: Path, out: Path, *extra) -> tuple[object, dict]:
    r = cli("sweep", "--repo", repo, "--out", out, *extra)
    assert r.code == 0, r.err
    return r, json.loads((out / "sweep.json").read_text())


def by_number(doc: dict) -> dict[int, dict]:
    return {p["number"]: p for p in doc["prs"]}


def test_sweep_audits_open_closed_and_merged_prs(cli, competition, metadata, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r, doc = sweep(cli, competition, Path("out"), "--metadata", metadata, "--jobs", "2")
    assert doc["schema"] == "scorefirst-sweep" and doc["schema_version"] == "1.0"
    prs = by_number(doc)
    assert sorted(prs) == [10, 11, 12, 13, 14]
    assert (prs[10]["state"], prs[11]["state"], prs[12]["state"], prs[14]["state"]) == ("open", "closed", "merged",
                                                                                          "unmerged")
    assert prs[10]["title"] == "Record: epoch TTT" and prs[10]["author"] == "alice"
    assert prs[10]["url"] == "https://example.invalid/pull/10"
    # every finding pinned to its line, in the PR's own folder
    ttt10 = [(f["path"], f["line"]) for res in prs[10]["results"] for fr in res["files"] for f in fr["findings"]
             if f["rule_id"] == "PG-TTT-001" and f["status"] == "active"]
    assert ttt10 == [(f"{TRACK}/2026-03-02_EpochTTT/train_gpt.py", ORIGINAL_TTT_LINE)]
    ttt11 = [(f["path"], f["line"]) for res in prs[11]["results"] for fr in res["files"] for f in fr["findings"]
             if f["rule_id"] == "PG-TTT-001" and f["status"] == "active"]
    assert ttt11 == [(f"{TRACK}/2026-03-12_EpochTTT_Tuned/train_gpt.py", FORK_TTT_LINE)]
    assert prs[10]["verdict"] == "FAIL" and "PG-TTT-001" in prs[10]["rules"]
    assert prs[10]["claimed_bpb"] == 1.0512 and prs[11]["claimed_bpb"] == 1.0498
    # the merged PR: its merge commit against the first parent, not its head against main (which finds nothing)
    assert prs[12]["merged"] is True and prs[12]["status"] == "audited"
    assert prs[12]["folders"] == [f"{TRACK}/2026-03-05_Legal"]
    assert prs[12]["commit"] == git(competition, "rev-parse", "main~1")
    assert prs[12]["base"] == git(competition, "rev-parse", "main~1^1")
    assert prs[12]["verdict"] == "PASS" and prs[12]["rules"] == []
    assert prs[13]["status"] == "no-records" and prs[13]["results"] == []
    # not a terminal: one line per PR, as each finishes (two workers: in any order)
    lines = sorted(ln.split("] ", 1)[1] for ln in r.err.splitlines() if ln.startswith("["))
    assert lines == ["PR #10: FAIL PG-TTT-001", "PR #11: FAIL PG-TTT-001", "PR #12: PASS",
                     "PR #13: no records/ changes", "PR #14: FAIL PG-TTT-001"]
    # written paths as they resolve from the current directory
    assert r.out.splitlines() == ["out/sweep.json", "out/index.html"]


def test_clusters_group_the_copied_violation_and_lineage_finds_the_fork(cli, competition, metadata, tmp_path):
    _, doc = sweep(cli, competition, tmp_path / "out", "--metadata", metadata)
    prs = by_number(doc)
    shared = [c for c in doc["clusters"] if c["count"] > 1]
    assert len(shared) == 1
    c = shared[0]
    assert c["rule_id"] == "PG-TTT-001" and c["members"] == [10, 11] and c["first_pr"] == 10
    assert c["first_date"] == "2026-03-02T10:00:00Z" and c["function"] == "ttt_adapt"
    assert c["example"]["line"] == ORIGINAL_TTT_LINE
    assert prs[10]["clusters"] == prs[11]["clusters"] == [c["id"]]
    # the unrelated illegal PR is its own cluster, not merged into the copied one
    assert prs[14]["verdict"] == "FAIL" and prs[14]["clusters"] and c["id"] not in prs[14]["clusters"]
    assert prs[11]["lineage"] == {"parent": 10, "shared_functions": 4, "functions": 4}
    assert prs[10]["lineage"] is None  # nothing earlier
    assert prs[12]["lineage"] is None and prs[14]["lineage"] is None  # only eval_val in common: coincidence
    assert doc["summary"]["clusters"] == 1 and doc["summary"]["with_lineage"] == 1
    weeks = {w["week"]: w for w in doc["timeline"]}
    assert weeks["2026-03-02"]["FAIL"] == 1 and weeks["2026-03-02"]["PASS"] == 1
    assert weeks["2026-03-09"]["FAIL"] == 1 and weeks["2026-03-16"]["FAIL"] == 1


def test_sweep_resumes_from_the_journal(cli, competition, tmp_path):
    _, first = sweep(cli, competition, tmp_path / "a", "--pr", "10", "12")  # as if interrupted after two PRs
    assert first["summary"]["from_journal"] == 0
    r, full = sweep(cli, competition, tmp_path / "b")
    assert full["summary"]["from_journal"] == 2
    assert "[1/5] PR #10: FAIL PG-TTT-001 (journal)" in r.err
    _, again = sweep(cli, competition, tmp_path / "c")
    assert again["summary"]["from_journal"] == 5
    for d in (full, again):
        d["summary"].pop("from_journal")
    assert full == again
    # a new commit on a PR's head is audited again
    git(competition, "checkout", "-q", "pr10")
    put(competition, f"{TRACK}/2026-03-02_EpochTTT/train_gpt.py", LEGAL)
    git(competition, "commit", "-q", "-am", "fix", date="2026-03-03T00:00:00Z")
    git(competition, "update-ref", "refs/pull/10/head", git(competition, "rev-parse", "HEAD"))
    git(competition, "checkout", "-q", "main")
    _, fixed = sweep(cli, competition, tmp_path / "d")
    assert fixed["summary"]["from_journal"] == 4
    assert by_number(fixed)[10]["verdict"] == "PASS"


def test_no_cache_reads_and_writes_no_journal(cli, competition, tmp_path, cache_env):
    sweep(cli, competition, tmp_path / "a", "--no-cache", "--pr", "10")
    assert not cache_env.exists()


def test_since_and_pr_select(cli, competition, metadata, tmp_path):
    _, doc = sweep(cli, competition, tmp_path / "a", "--since", "2026-03-10", "--metadata", metadata)
    assert sorted(by_number(doc)) == [11, 14]
    _, doc = sweep(cli, competition, tmp_path / "b", "--pr", "14", "--pr", "12")
    assert sorted(by_number(doc)) == [12, 14]
    assert doc["selection"]["prs"] == [12, 14]


def test_a_pr_missing_from_the_clone_is_recorded_not_fatal(cli, competition, tmp_path):
    r, doc = sweep(cli, competition, tmp_path / "a", "--pr", "10", "99")
    prs = by_number(doc)
    assert prs[99]["status"] == "error" and "refs/pull/99/head" in prs[99]["error"]
    assert prs[10]["status"] == "audited"
    assert "1 errors" in r.last_err_line


@pytest.mark.parametrize("args, message", [
    (["--since", "last tuesday"], "--since 'last tuesday': expected a date like 2026-03-20 or an ISO 8601 time"),
    (["--metadata", "MISSING"], "--metadata MISSING: No such file or directory"),
])
def test_bad_options_are_one_line_exit_2(cli, competition, tmp_path, args, message):
    r = cli("sweep", "--repo", competition, "--out", tmp_path / "o", *args)
    assert r.code == 2 and r.last_err_line == f"scorefirst: exit 2: {message}"
    assert "Traceback" not in r.err and not (tmp_path / "o").exists()


def test_bad_metadata_json(cli, competition, tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('[{"number": 1},')
    r = cli("sweep", "--repo", competition, "--metadata", bad, "--out", tmp_path / "o")
    assert r.code == 2 and r.last_err_line.startswith(f"scorefirst: exit 2: --metadata {bad}:1:")


def test_not_a_repository(cli, tmp_path):
    (tmp_path / "plain").mkdir()
    r = cli("sweep", "--repo", tmp_path / "plain", "--out", tmp_path / "o")
    assert r.code == 2 and "not a git repository" in r.last_err_line


def test_sweep_sarif_is_one_run_rooted_at_the_repository(cli, competition, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    sarif = tmp_path / "s.sarif"
    sweep(cli, competition, tmp_path / "a", "--sarif", sarif)
    obj = json.loads(sarif.read_text())
    schema = json.loads((REPO_ROOT / "tests/data/sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(obj, schema)
    assert len(obj["runs"]) == 1
    run = obj["runs"][0]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == competition.resolve().as_uri() + "/"
    locs = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]
            if r["ruleId"] == "PG-TTT-001"]
    assert {"uri": f"{TRACK}/2026-03-02_EpochTTT/train_gpt.py", "uriBaseId": "SRCROOT"} in locs
    assert [t["target"] for t in run["properties"]["targets"]] == [
        f"{TRACK}/2026-03-02_EpochTTT", f"{TRACK}/2026-03-05_Legal", f"{TRACK}/2026-03-12_EpochTTT_Tuned",
        f"{TRACK}/2026-03-20_Warm"]


def test_sweep_json_matches_its_schema(cli, competition, metadata, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    _, doc = sweep(cli, competition, tmp_path / "a", "--metadata", metadata, "--pr", "10", "11", "12", "13", "99")
    schema = json.loads((REPO_ROOT / "harness/schemas/sweep.schema.json").read_text())
    jsonschema.validate(doc, schema)


# --- audit --repo --pr uses the same resolution -------------------------------------------------------------


def test_audit_a_merged_pr(cli, competition, tmp_path):
    j = tmp_path / "m.json"
    r = cli("audit", "--repo", competition, "--pr", "12", "--json", j)
    assert r.code == 0, r.err
    data = json.loads(j.read_text())
    assert data["target"] == f"{TRACK}/2026-03-05_Legal" and data["pr"] == 12


def test_a_file_changed_beside_the_submissions_is_audited_alone(cli, competition, tmp_path):
    """A PR that edits records/README.md or drops a script into records/<track>/ changed those files, not the
    submissions below them (other PRs' work): only its own Python file is audited."""
    pr(competition, 20, {"records/README.md": "how to submit, edited\n"}, "2026-03-21T10:00:00Z")
    pr(competition, 21, {f"{TRACK}/helper.py": LEGAL}, "2026-03-22T10:00:00Z")
    _, doc = sweep(cli, competition, tmp_path / "out", "--pr", "20", "21", "--no-cache")
    prs = by_number(doc)
    assert prs[20]["status"] == "no-records" and prs[20]["results"] == []
    assert prs[21]["status"] == "audited" and prs[21]["folders"] == [TRACK]
    assert [f["path"] for r in prs[21]["results"] for f in r["files"]] == [f"{TRACK}/helper.py"]
    assert prs[21]["verdict"] == "PASS" and prs[21]["clusters"] == []
    j = tmp_path / "a.json"
    r = cli("audit", "--repo", competition, "--pr", "21", "--json", j, "--no-cache")
    assert r.code == 0, r.err
    assert [f["path"] for f in json.loads(j.read_text())["files"]] == [f"{TRACK}/helper.py"]
    r = cli("audit", "--repo", competition, "--pr", "20")
    assert r.code == 2 and "PR #20 adds or modifies nothing to audit under records/" in r.last_err_line


def test_audit_several_prs_and_repeated_pr(cli, competition, tmp_path):
    for args in (["--pr", "10", "12"], ["--pr", "10", "--pr", "12"]):
        j = tmp_path / "several.json"
        r = cli("audit", "--repo", competition, *args, "--json", j, "--exit-zero")
        assert r.code == 0, r.err
        data = json.loads(j.read_text())
        assert [(x["pr"], x["target"]) for x in data["results"]] == [
            (10, f"{TRACK}/2026-03-02_EpochTTT"), (12, f"{TRACK}/2026-03-05_Legal")]


def test_repeated_pr_with_paths_is_a_usage_error(cli, tmp_path):
    p = tmp_path / "t.py"
    p.write_text("x = 1\n")
    r = cli("audit", p, "--pr", "1", "--pr", "2")
    assert r.code == 2
    assert r.last_err_line == ("scorefirst: exit 2: usage error: --pr labels the PATHs with one pull request; got 2 "
                               "(1, 2): give one, or use --repo to audit several")


# --- pieces ------------------------------------------------------------------------------------------------


def test_fingerprints_ignore_renames_numbers_comments_and_layout():
    from harness.sweep.fingerprints import ParsedCode
    from harness.sweep.fingerprints import function_fingerprints

    assert function_fingerprints(ORIGINAL) == function_fingerprints(FORK)
    assert len(function_fingerprints(ORIGINAL)) == 4
    assert ParsedCode(ORIGINAL).enclosing(ORIGINAL_TTT_LINE) == ParsedCode(FORK).enclosing(FORK_TTT_LINE)
    # a changed call is a different function
    assert function_fingerprints(ORIGINAL.replace("opt.step()", "opt.zero_grad()")) != function_fingerprints(ORIGINAL)
    assert ParsedCode(OTHER).enclosing(8)[0] != ParsedCode(ORIGINAL).enclosing(ORIGINAL_TTT_LINE)[0]
    assert function_fingerprints("def broken(:\n") == []


def test_progress_bar_on_a_terminal():
    from harness.sweep.progress import Progress

    buf = io.StringIO()
    p = Progress(4, stream=buf, tty=True)
    for n in (1, 2):
        p.update({"number": n, "status": "audited", "verdict": "PASS", "rules": []}, reused=False)
    p.close()
    text = buf.getvalue()
    assert text.count("\r") == 2 and "2/4 PRs" in text and " 50.0%" in text and "ETA " in text
    assert "PR #" not in text and text.endswith("\n")
