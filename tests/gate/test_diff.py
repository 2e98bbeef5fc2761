"""Diff detection on real git repositories: which folders a change adds or modifies, against the merge base."""
from __future__ import annotations

import json

from harness.gate.model import Status


def test_added_folder_is_gated_and_nothing_else(repo, make, run_gate):
    sub = make()
    head = repo.pr(sub)
    # main moves on after the PR branched: its new record is not part of the PR
    repo.commit("later record on main", make(name="2026-04-01_Later").files())
    r = run_gate(repo)
    assert r.error is None
    assert [f.folder for f in r.folders] == [sub.folder]
    assert r.folders[0].change == "added"
    assert r.head_commit == head
    assert r.merge_base == repo.git("merge-base", "main", "pr")
    assert all(c["path"].startswith(sub.folder + "/") for c in r.changed)
    assert r.exit_code() == 0, r.reason()


def test_modified_existing_folder_is_flagged_but_not_blocked(repo, run_gate):
    old = "records/track_10min_16mb/2026-03-20_Old_Record"
    repo.pr(files={f"{old}/README.md": "# Old record\n\nclarified the run command\n"})
    r = run_gate(repo)
    (f,) = r.folders
    assert f.folder == old and f.change == "modified"
    fmt = f.checks["format"]
    assert fmt.status is Status.WARN
    assert any("already exists on the base branch" in m.text and m.path == old for m in fmt.messages)
    assert r.exit_code() == 0


def test_change_without_records_has_nothing_to_gate(repo, run_gate, gate_cli):
    repo.pr(files={"docs/notes.md": "notes\n"})
    r = run_gate(repo)
    assert r.folders == [] and r.exit_code() == 0
    assert [c["path"] for c in r.changed] == ["docs/notes.md"]
    cli = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr")
    assert cli.code == 0
    assert cli.last_err_line == ("scorefirst: exit 0: nothing to gate: the change adds or modifies no folder under "
                                 "records/")


def test_files_outside_the_folder_each_get_a_located_message(repo, make, run_gate):
    sub = make()
    old = "records/track_10min_16mb/2026-03-20_Old_Record"
    repo.commit("guide", {"docs/guide.md": "How to submit: nothing like a train log.\n"})
    repo.pr(sub, files={"README.md": "# Parameter Golf, edited\n", "records/track_10min_16mb/notes.md": "x\n"},
            delete=("docs/guide.md", f"{old}/submission.json"))
    r = run_gate(repo)
    (f,) = r.folders  # deleting part of an old record does not make it a submission folder
    fmt = f.checks["format"]
    assert fmt.status is Status.FAIL
    outside = {m.path: m.text for m in fmt.messages if m.key.startswith("outside:")}
    assert set(outside) == {"README.md", "records/track_10min_16mb/notes.md", "docs/guide.md",
                            f"{old}/submission.json"}
    assert outside["README.md"].startswith("the change modifies this file, outside the submission folder")
    assert outside["docs/guide.md"].startswith("the change deletes this file")
    assert "moves this file into" in outside[f"{old}/submission.json"] or \
        outside[f"{old}/submission.json"].startswith("the change deletes this file")
    assert outside["records/track_10min_16mb/notes.md"].startswith("the change adds this file")
    assert r.exit_code() == 1
    assert r.reason() == f"blocked: {sub.folder} (format FAIL)"


def test_moving_a_file_into_the_folder_is_a_change_outside(repo, make, run_gate):
    sub = make()
    repo.commit("a helper on main", {"tools/helper.py": "print('helper')\n" * 20})
    repo.pr(sub, files={f"{sub.folder}/helper.py": "print('helper')\n" * 20}, delete=("tools/helper.py",))
    r = run_gate(repo)
    msgs = [m for m in r.folders[0].checks["format"].messages if m.key == "outside:tools/helper.py"]
    assert len(msgs) == 1 and "moves this file into" in msgs[0].text


def test_two_folders_in_one_change_are_gated_each_and_flagged(repo, make, run_gate):
    """Merged PRs brought several folders at once (#65): each folder is gated on its own, and a person looks."""
    a, b = make(name="2026-03-25_A"), make(name="2026-03-26_B")
    repo.pr(files={**a.files(), **b.files()})
    r = run_gate(repo)
    assert [f.folder for f in r.folders] == [a.folder, b.folder]
    for f, other in ((r.folders[0], b.folder), (r.folders[1], a.folder)):
        (m,) = [m for m in f.checks["format"].messages if m.key == "other-folders"]
        assert m.level == "warning" and other in m.text and m.path == f.folder
    assert r.exit_code() == 0


def test_outside_changes_block_on_code_or_other_records(repo, make, run_gate):
    sub = make()
    repo.pr(sub, files={"paper/notes.tex": "x\n", "scripts/rerun.py": "print(1)\n", "README.md": "edited\n",
                        ".github/workflows/x.yml": "on: push\n"})
    fmt = run_gate(repo).folders[0].checks["format"]
    level = {m.path: m.level for m in fmt.messages if m.key.startswith("outside:")}
    assert level == {"paper/notes.tex": "warning", "scripts/rerun.py": "warning", "README.md": "error",
                     ".github/workflows/x.yml": "error"}


def test_head_given_as_a_commit_of_a_fork(repo, make, run_gate):
    """A fork's PR head is a commit on no local branch (GitHub passes head.sha); it is read from git objects."""
    sub = make()
    head = repo.pr(sub, name="fork-branch")
    repo.git("branch", "-D", "fork-branch")
    repo.git("update-ref", "refs/pull/12/head", head)
    r = run_gate(repo, head=head)
    assert [f.folder for f in r.folders] == [sub.folder] and r.exit_code() == 0


def test_working_tree_is_never_read(repo, make, run_gate):
    """Files are read from the commit, not from a checkout that could differ."""
    sub = make()
    repo.pr(sub)
    repo.git("checkout", "-q", "pr")
    (repo.path / sub.folder / "train_gpt.py").write_text("this is not python (\n")
    r = run_gate(repo)
    assert r.folders[0].checks["legality"].status is Status.PASS


def test_default_base_from_github_base_ref(repo, make, run_gate, monkeypatch):
    from harness.gate import GateConfig, GateOptions
    from harness.gate import run_gate as direct

    repo.git("branch", "develop", "main")
    repo.pr(make())
    monkeypatch.setenv("GITHUB_BASE_REF", "develop")
    r = direct(GateOptions(repo=repo.path, head="pr", config=GateConfig(), cache_dir=None, jobs=1))
    assert r.base == "develop" and r.error is None and len(r.folders) == 1


def test_git_problems_are_exit_2_with_a_reason(repo, make, gate_cli, tmp_path):
    repo.pr(make())
    r = gate_cli("--repo", repo.path, "--base", "no-such-branch", "--head", "pr")
    assert r.code == 2
    assert r.last_err_line.startswith("scorefirst: exit 2: --base no-such-branch: no such commit in")
    plain = tmp_path / "plain"
    plain.mkdir()
    r = gate_cli("--repo", plain, "--base", "main")
    assert r.code == 2 and r.last_err_line.endswith("not a git repository")
    r = gate_cli("--repo", tmp_path / "missing")
    assert r.code == 2 and r.last_err_line.endswith("no such folder")
    repo.git("checkout", "-q", "--orphan", "unrelated")
    repo.commit("unrelated history", {"x.txt": "x\n"})
    r = gate_cli("--repo", repo.path, "--base", "main", "--head", "unrelated")
    assert r.code == 2 and "shares no history with the base" in r.last_err_line


def test_an_already_merged_pr_is_gated_on_what_its_merge_brought_in(repo, make, run_gate, gate_cli):
    """A merged PR's head is an ancestor of main (its merge base is itself): the change is its merge commit
    against that commit's first parent, not "nothing to gate"."""
    sub = make()
    head = repo.pr(sub)
    repo.git("merge", "-q", "--no-ff", "-m", "Merge PR", "pr")
    merge = repo.git("rev-parse", "HEAD")
    repo.commit("later record on main", make(name="2026-04-01_Later").files())
    r = run_gate(repo, head=head)
    assert r.error is None
    assert (r.merged_by, r.merge_base, r.head_commit) == (merge, repo.git("rev-parse", f"{merge}^1"), head)
    assert [(f.folder, f.change) for f in r.folders] == [(sub.folder, "added")]
    assert all(c["path"].startswith(sub.folder + "/") for c in r.changed)  # not the later record
    cli = gate_cli("--repo", repo.path, "--base", "main", "--head", head, "--format", "json")
    data = json.loads(cli.out)
    assert data["merged_by"] == merge and [f["folder"] for f in data["folders"]] == [sub.folder]


def test_a_fast_forwarded_pr_is_its_own_merge(repo, make, run_gate):
    sub = make()
    head = repo.pr(sub)
    repo.git("merge", "-q", "--ff-only", "pr")
    repo.commit("later record on main", make(name="2026-04-01_Later").files())
    r = run_gate(repo, head=head)
    assert (r.merged_by, r.merge_base) == (head, repo.git("rev-parse", f"{head}^1"))
    assert [f.folder for f in r.folders] == [sub.folder]


def test_the_base_itself_still_has_nothing_to_gate(repo, run_gate):
    r = run_gate(repo, head="main")
    assert r.merged_by == "" and r.folders == [] and r.changed == []
