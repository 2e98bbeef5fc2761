"""`--pr N --repo PATH` on real local git repositories with pull refs (no mocked git)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from audits.gitpr import changed_records, pr_targets, submission_folder
from core.git import GitError

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def put(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture
def upstream(tmp_path, samples):
    """A competition repo: main has one old record; PR 7 adds a new record folder and touches a file outside."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    put(repo, "README.md", "parameter golf\n")
    put(repo, "records/track_10min_16mb/2026-01-01_Old/train_gpt.py", samples.illegal)  # old, not in the PR
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "pr7")
    put(repo, "records/track_10min_16mb/2026-03-01_New/train_gpt.py", samples.illegal)
    put(repo, "records/track_10min_16mb/2026-03-01_New/README.md",
        "Run:\n\n    TTT_ENABLED=1 torchrun --nproc_per_node=8 train_gpt.py\n")
    put(repo, "records/track_10min_16mb/2026-03-01_New/submission.json", json.dumps({"name": "New", "val_bpb": 1.07}))
    put(repo, "README.md", "parameter golf, edited\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PR 7")
    git(repo, "update-ref", "refs/pull/7/head", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "-b", "pr8", "main")
    put(repo, "docs/notes.md", "no records here\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PR 8")
    git(repo, "update-ref", "refs/pull/8/head", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "main")
    # main moves on after the PR branched: the diff must be against the merge base, not main's tip
    put(repo, "records/track_10min_16mb/2026-02-01_Later/train_gpt.py", samples.clean)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later record on main")
    return repo


def test_audits_only_what_the_pr_adds(cli, upstream, tmp_path):
    head_before = git(upstream, "rev-parse", "HEAD")
    j = tmp_path / "pr.json"
    r = cli("audit", "--repo", upstream, "--pr", "7", "--json", j)
    assert r.code == 1, r.err
    data = json.loads(j.read_text())
    assert data["target"] == "records/track_10min_16mb/2026-03-01_New"
    assert data["pr"] == 7 and data["pr_url"] == "https://github.com/openai/parameter-golf/pull/7"
    assert [f["path"] for f in data["files"]] == ["records/track_10min_16mb/2026-03-01_New/train_gpt.py"]
    assert data["submission"] == {"name": "New", "val_bpb": 1.07}
    assert data["env"] == [{"key": "TTT_ENABLED", "value": "1",
                            "source": "records/track_10min_16mb/2026-03-01_New/README.md:3"}]
    assert data["verdict"]["conditions"]["C3"] == "FAIL"
    assert "records/track_10min_16mb/2026-03-01_New/train_gpt.py:8:9: PG-TTT-001" in r.out
    # nothing was checked out or changed in the clone
    assert git(upstream, "rev-parse", "HEAD") == head_before
    assert git(upstream, "status", "--porcelain") == ""


def test_extraction_is_private_and_cleaned_up(upstream):
    tmp, targets = pr_targets(upstream, 7)
    root = Path(tmp.name)
    try:
        assert root.is_dir() and not str(root).startswith(str(upstream))
        assert [t.name for t in targets] == ["records/track_10min_16mb/2026-03-01_New"]
        assert (root / targets[0].name / "train_gpt.py").is_file()
    finally:
        tmp.cleanup()
    assert not root.exists()


def test_diff_is_against_the_merge_base(upstream):
    base = git(upstream, "merge-base", "main", "refs/pull/7/head")
    changed = changed_records(upstream, base, "refs/pull/7/head")
    assert changed == [f"records/track_10min_16mb/2026-03-01_New/{n}" for n in ("README.md", "submission.json",
                                                                               "train_gpt.py")]


def test_fetches_missing_pull_ref_from_origin(cli, upstream, tmp_path):
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--mirror", str(upstream), str(origin))  # a bare origin with refs/pull/*
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert subprocess.run(["git", "rev-parse", "--verify", "--quiet", "refs/pull/7/head"], cwd=clone,
                          capture_output=True).returncode != 0  # a plain clone lacks pull refs
    r = cli("audit", "--repo", clone, "--pr", "7", "--format", "json")
    assert r.code == 1, r.err
    assert json.loads(r.out)["target"] == "records/track_10min_16mb/2026-03-01_New"
    assert git(clone, "rev-parse", "refs/pull/7/head") == git(upstream, "rev-parse", "refs/pull/7/head")


def test_missing_pr_on_origin_is_one_line_exit_2(cli, upstream, tmp_path):
    clone = tmp_path / "clone2"
    git(tmp_path, "clone", "-q", str(upstream), str(clone))
    r = cli("audit", "--repo", clone, "--pr", "99")
    assert r.code == 2
    assert r.last_err_line.startswith("scorefirst: exit 2: cannot fetch refs/pull/99/head from origin: ")
    assert "Traceback" not in r.err


def test_no_remote_is_one_line_exit_2(cli, upstream):
    r = cli("audit", "--repo", upstream, "--pr", "99")
    assert r.code == 2
    assert r.last_err_line == (f"scorefirst: exit 2: refs/pull/99/head is not in {upstream} and the clone has no "
                               "remote to fetch it from")


def test_pr_without_records_changes(cli, upstream):
    r = cli("audit", "--repo", upstream, "--pr", "8")
    assert r.code == 2
    assert "PR #8 adds or modifies nothing to audit under records/" in r.last_err_line


def test_not_a_repository(cli, tmp_path):
    (tmp_path / "plain").mkdir()
    r = cli("audit", "--repo", tmp_path / "plain", "--pr", "7")
    assert r.code == 2
    assert "not a git repository" in r.last_err_line


def test_submission_folder():
    assert submission_folder("records/track/2026_X/train_gpt.py") == "records/track/2026_X"
    assert submission_folder("records/track/2026_X/sub/helper.py") == "records/track/2026_X"
    assert submission_folder("records/train_gpt.py") == "records"
    with pytest.raises(GitError):
        pr_targets(Path("/nonexistent/repo"), 1)


def _commit(repo: Path, files: dict[str, str], msg: str) -> str:
    for rel, text in files.items():
        put(repo, rel, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


def test_a_pr_merged_through_another_prs_branch_is_its_own_change(tmp_path):
    """PR 21's branch was merged into PR 20's branch, which main then merged: no commit of main's first-parent
    line descends from PR 21 along first parents, yet PR 21 is in main; its change is its own folder."""
    from audits.gitpr import read_branch, resolve_change

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, {"README.md": "x\n"}, "base")
    git(repo, "checkout", "-q", "-b", "pr21")
    h21 = _commit(repo, {"records/track_10min_16mb/2026-04-01_B/train_gpt.py": "print(2)\n"}, "PR 21")
    git(repo, "checkout", "-q", "-b", "pr20", "main")
    _commit(repo, {"records/track_10min_16mb/2026-04-01_A/train_gpt.py": "print(1)\n"}, "PR 20")
    git(repo, "merge", "-q", "--no-ff", "-m", "take PR 21 along", "pr21")
    git(repo, "update-ref", "refs/pull/20/head", git(repo, "rev-parse", "HEAD"))
    git(repo, "update-ref", "refs/pull/21/head", h21)
    git(repo, "checkout", "-q", "main")
    _commit(repo, {"README.md": "y\n"}, "main moves on")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge PR 20", "pr20")
    branch = read_branch(repo)
    change = resolve_change(repo, 21, h21, branch)
    assert change.merged and change.side_branch
    assert change.folders == ["records/track_10min_16mb/2026-04-01_B"]
    assert "merged into main with another branch" in change.describe("main")
    pr20 = resolve_change(repo, 20, git(repo, "rev-parse", "refs/pull/20/head"), branch)
    assert pr20.merged and not pr20.side_branch and pr20.folders == ["records/track_10min_16mb/2026-04-01_A",
                                                                     "records/track_10min_16mb/2026-04-01_B"]


def test_a_fork_with_unrelated_history_is_compared_with_the_branch_tip(tmp_path):
    """A PR from a repository started from scratch shares no commit with main: what it adds or modifies is what
    differs from main's tip (was an error that dropped the PR from a sweep)."""
    from audits.gitpr import read_branch, resolve_change

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, {"records/track_10min_16mb/2026-01-01_Base/train_gpt.py": "print(0)\n"}, "base")
    git(repo, "checkout", "-q", "--orphan", "fresh")
    git(repo, "rm", "-rq", "--cached", ".")
    shutil.rmtree(repo / "records")
    head = _commit(repo, {"records/track_10min_16mb/2026-01-01_Base/train_gpt.py": "print(0)\n",
                          "records/track_10min_16mb/2026-05-01_Mine/train_gpt.py": "print(5)\n"}, "from scratch")
    git(repo, "update-ref", "refs/pull/30/head", head)
    git(repo, "checkout", "-q", "main")
    change = resolve_change(repo, 30, head, read_branch(repo))
    assert change.unrelated and not change.merged
    assert change.folders == ["records/track_10min_16mb/2026-05-01_Mine"]  # the identical baseline is not its change
    assert "shares no history with main" in change.describe("main")
