"""Which submission folders a change adds or modifies, read from git without checking anything out.

The change is `head` against its merge base with `base` (so commits that landed on the base branch after the PR
branched are not the PR's). Every changed path is kept, in and outside `records/`, because a record PR may touch
only its own folder. Folders are copied out of git objects (`audits.gitpr.extract_folder`), never from a work tree
that the submission could have altered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from audits.gitpr import extract_folder
from core import git as core_git
from core.competition import record_folder
from core.git import DEFAULT_BRANCHES, GitError


class GateError(Exception):
    """A one-line reason the gate cannot run (exit 2)."""


@dataclass(frozen=True)
class Change:
    status: str  # A, M, D, R, C, T (git's letters)
    path: str
    old_path: str | None = None

    def to_dict(self) -> dict[str, str]:
        d = {"status": self.status, "path": self.path}
        if self.old_path:
            d["from"] = self.old_path
        return d


def git(repo: Path, *args: str, check: bool = True, binary: bool = False):
    try:
        return core_git.git(repo, *args, check=check, binary=binary)
    except GitError as e:
        raise GateError(str(e)) from None


def check_repo(repo: Path) -> None:
    try:
        core_git.check_repo(repo)
    except GitError as e:
        raise GateError(str(e)) from None


def resolve(repo: Path, ref: str, what: str) -> str:
    proc = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        hint = " (fetch it first, e.g. actions/checkout with fetch-depth: 0)" if what == "--base" else ""
        raise GateError(f"{what} {ref}: no such commit in {repo}{hint}")
    return proc.stdout.strip()


def default_base(repo: Path) -> str:
    """$GITHUB_BASE_REF on Actions, else origin/main, main, origin/master, master."""
    gh = os.environ.get("GITHUB_BASE_REF", "").strip()
    names = ([f"origin/{gh}", gh] if gh else []) + list(DEFAULT_BRANCHES)
    for name in names:
        if git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False).returncode == 0:
            return name
    raise GateError(f"no base branch found in {repo} (looked for {', '.join(names)}); pass --base REF")


def merge_base(repo: Path, base: str, head: str) -> str:
    proc = git(repo, "merge-base", base, head, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise GateError(f"{head[:12]} shares no history with the base {base[:12]}")
    return proc.stdout.strip()


def changes(repo: Path, base: str, head: str) -> list[Change]:
    """Every path `head` changes relative to `base` (renames detected; deletions kept)."""
    out = git(repo, "diff", "--name-status", "-z", "--find-renames", "--no-ext-diff", base, head).stdout
    parts = out.split("\0")
    result: list[Change] = []
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i][0]
        if status in "RC":
            result.append(Change(status, parts[i + 2], parts[i + 1]))
            i += 3
        else:
            result.append(Change(status, parts[i + 1]))
            i += 2
    return sorted(result, key=lambda c: c.path)


def submission_folders(chs: list[Change]) -> list[str]:
    """Folders under records/<track>/ that the change adds to or modifies (deleting a whole folder is not one)."""
    return sorted({f for c in chs if c.status != "D" for f in [record_folder(c.path)] if f})


def exists_at(repo: Path, commit: str, path: str) -> bool:
    return git(repo, "cat-file", "-e", f"{commit}:{path}", check=False).returncode == 0


def extract(repo: Path, commit: str, folder: str, dest: Path) -> Path:
    try:
        extract_folder(repo, commit, folder, dest)
    except GitError as e:
        raise GateError(str(e)) from None
    return dest.joinpath(*PurePosixPath(folder).parts)


def head_files(repo: Path, commit: str, folder: str) -> list[tuple[str, str]]:
    """(mode, path) of every entry of `folder` at `commit`, for symlink and submodule checks."""
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", folder).stdout
    items = []
    for entry in out.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            items.append((meta.split()[0], path))
    return items
