"""Audit a pull request from a git clone of the competition repository, without checking anything out.

`pr_targets(repo, n)` finds what `refs/pull/N/head` adds or modifies under `records/` relative to its merge
base with the default branch (`origin/main`, else `main`), fetching the ref from `origin` when it is missing,
and copies each touched submission folder out of git (`git ls-tree` + `git cat-file`) into a private temporary
folder. Each folder becomes one audit target, reported under its repository path (`records/<track>/<name>`).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from audits.api import Target, pr_url_for

GIT_TIMEOUT_S = 60
FETCH_TIMEOUT_S = 120
RECORDS = "records"
DEFAULT_BRANCHES = ("origin/main", "main", "origin/master", "master")
MAX_BLOB_BYTES = 50_000_000  # far above any submission file; refuse to copy anything larger


class GitPRError(Exception):
    """A one-line reason the pull request cannot be audited."""


def _git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT_S, check: bool = True,
         binary: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", LC_ALL="C")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, text=not binary)
    except FileNotFoundError:
        raise GitPRError("git is not installed (needed for --repo)") from None
    except subprocess.TimeoutExpired:
        raise GitPRError(f"git {args[0]} timed out after {timeout:.0f} s in {repo}") from None
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", "replace")
        last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        raise GitPRError(f"git {' '.join(args[:2])} failed in {repo}: {last}")
    return proc


def _has_commit(repo: Path, ref: str) -> bool:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode == 0


def pr_ref(n: int) -> str:
    return f"refs/pull/{n}/head"


def resolve_pr(repo: Path, n: int) -> str:
    """The commit of PR N, fetching `refs/pull/N/head` from origin when the clone lacks it."""
    ref = pr_ref(n)
    if _has_commit(repo, ref):
        return _git(repo, "rev-parse", f"{ref}^{{commit}}").stdout.strip()
    remotes = _git(repo, "remote").stdout.split()
    if not remotes:
        raise GitPRError(f"{ref} is not in {repo} and the clone has no remote to fetch it from")
    remote = "origin" if "origin" in remotes else remotes[0]
    proc = _git(repo, "fetch", "--quiet", "--no-tags", remote, f"+{ref}:{ref}", timeout=FETCH_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not _has_commit(repo, ref):
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "ref not found")
        raise GitPRError(f"cannot fetch {ref} from {remote}: {last}")
    return _git(repo, "rev-parse", f"{ref}^{{commit}}").stdout.strip()


def default_branch(repo: Path) -> str:
    for name in DEFAULT_BRANCHES:
        if _has_commit(repo, name):
            return name
    raise GitPRError(f"{repo} has no default branch to diff against (looked for {', '.join(DEFAULT_BRANCHES)})")


def changed_records(repo: Path, base: str, head: str) -> list[str]:
    """Paths under records/ that `head` adds, modifies or renames relative to `base`."""
    out = _git(repo, "diff", "--name-only", "--find-renames", "--diff-filter=AMR",
               "-z", base, head, "--", f"{RECORDS}/").stdout
    return sorted(p for p in out.split("\0") if p)


def submission_folder(path: str) -> str:
    """`records/<track>/<name>` for a file inside a submission folder, else the file's folder."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 4:
        return "/".join(parts[:3])
    return "/".join(parts[:-1]) or RECORDS


def _safe_rel(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or any(part in ("..", "", ".git") for part in p.parts):
        raise GitPRError(f"refusing to extract unsafe path {path!r} from git")
    return p


def extract_folder(repo: Path, commit: str, folder: str, dest: Path) -> int:
    """Copy `folder` as it is at `commit` into `dest/folder`; returns the number of entries written."""
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", folder).stdout
    count = 0
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split()
        if kind != "blob":
            continue  # submodules
        rel = _safe_rel(path)
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = int(_git(repo, "cat-file", "-s", sha).stdout.strip() or 0)
        if size > MAX_BLOB_BYTES:
            raise GitPRError(f"{path}: {size} bytes in git is too large to audit")
        data = _git(repo, "cat-file", "blob", sha, binary=True).stdout
        if mode == "120000":
            os.symlink(data.decode("utf-8", "replace"), target)  # reported as a symlink, never followed
        else:
            target.write_bytes(data)
        count += 1
    return count


def pr_targets(repo: Path, n: int) -> tuple[tempfile.TemporaryDirectory, list[Target]]:
    """The submission folders PR N adds or modifies, extracted to a temporary folder the caller cleans up."""
    if not repo.is_dir():
        raise GitPRError(f"--repo {repo}: no such folder")
    if _git(repo, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0 and \
            _git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise GitPRError(f"--repo {repo}: not a git repository")
    head = resolve_pr(repo, n)
    branch = default_branch(repo)
    merge_base = _git(repo, "merge-base", branch, head, check=False)
    if merge_base.returncode != 0 or not merge_base.stdout.strip():
        raise GitPRError(f"PR #{n} ({head[:12]}) shares no history with {branch}")
    base = merge_base.stdout.strip()
    changed = changed_records(repo, base, head)
    if not changed:
        raise GitPRError(f"PR #{n} adds or modifies nothing under {RECORDS}/ (compared with {branch} at {base[:12]})")
    folders = sorted({submission_folder(p) for p in changed})
    tmp = tempfile.TemporaryDirectory(prefix=f"scorefirst-pr{n}-")
    try:
        root = Path(tmp.name)
        targets = []
        for folder in folders:
            extract_folder(repo, head, folder, root)
            targets.append(Target(folder, [root.joinpath(*PurePosixPath(folder).parts)], display_root=root, pr=n,
                                  pr_url=pr_url_for(n)))
    except BaseException:
        tmp.cleanup()
        raise
    return tmp, targets
