"""Audit a pull request from a git clone of the competition repository, without checking anything out.

One resolution serves `audit --repo --pr N` and `sweep`: `resolve_change` decides what a PR contributed under
`records/`. A PR whose head is already in the default branch (`origin/main`, else `main`) was merged: its
contribution is the diff of the merge commit against its first parent, read as the merge left it (diffing the
head against the merge base would find nothing, the head being an ancestor of main). Any other PR, open or
closed, is diffed against its merge base with the default branch. `refs/pull/N/head` is fetched from `origin`
when missing. Each touched submission folder is copied out of git (`git ls-tree` + one `git cat-file --batch`)
into a private temporary folder and becomes one audit target reported under its repository path.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from audits.api import Target
from core.competition import RECORDS, pr_url_for, record_folder
from core.git import DEFAULT_BRANCHES, BlobReader, GitError, check_repo, git, has_commit

FETCH_TIMEOUT_S = 120
MAX_BLOB_BYTES = 50_000_000  # far above any submission file; refuse to copy anything larger
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: the base of a root merge commit


def pr_ref(n: int) -> str:
    return f"refs/pull/{n}/head"


def resolve_pr(repo: Path, n: int) -> str:
    """The commit of PR N, fetching `refs/pull/N/head` from origin when the clone lacks it."""
    ref = pr_ref(n)
    if has_commit(repo, ref):
        return git(repo, "rev-parse", f"{ref}^{{commit}}").stdout.strip()
    remotes = git(repo, "remote").stdout.split()
    if not remotes:
        raise GitError(f"{ref} is not in {repo} and the clone has no remote to fetch it from")
    remote = "origin" if "origin" in remotes else remotes[0]
    proc = git(repo, "fetch", "--quiet", "--no-tags", remote, f"+{ref}:{ref}", timeout=FETCH_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not has_commit(repo, ref):
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "ref not found")
        raise GitError(f"cannot fetch {ref} from {remote}: {last}")
    return git(repo, "rev-parse", f"{ref}^{{commit}}").stdout.strip()


def default_branch(repo: Path) -> str:
    for name in DEFAULT_BRANCHES:
        if has_commit(repo, name):
            return name
    raise GitError(f"{repo} has no default branch to diff against (looked for {', '.join(DEFAULT_BRANCHES)})")


@dataclass
class Branch:
    """The default branch, read once: its tip, its first-parent line and (for sweeps) every commit in it."""

    name: str
    tip: str
    first_parent: frozenset[str]
    contains: frozenset[str] | None = None  # None: ask git per PR (`merge-base --is-ancestor`)


def read_branch(repo: Path, every_commit: bool = False) -> Branch:
    name = default_branch(repo)
    tip = git(repo, "rev-parse", f"{name}^{{commit}}").stdout.strip()
    first = frozenset(git(repo, "rev-list", "--first-parent", tip).stdout.split())
    every = frozenset(git(repo, "rev-list", tip).stdout.split()) if every_commit else None
    return Branch(name, tip, first, every)


@dataclass
class PRChange:
    """What PR `number` contributed under records/: `folders` as they are at `commit`, compared with `base`."""

    number: int
    head: str
    merged: bool
    base: str  # the merge base (open/closed) or the merge commit's first parent (merged)
    commit: str  # where the files are read: the head, or the merge commit
    changed: list[str] = field(default_factory=list)
    unrelated: bool = False  # shares no history with the branch: compared with its tip
    side_branch: bool = False  # merged through another branch's merge: its own change, head against its base

    @property
    def folders(self) -> list[str]:
        """The folders to audit: each submission folder changed, and a folder that holds submissions only for a
        Python file changed in it (a README there is nothing to audit)."""
        out = set()
        for path in self.changed:
            folder = submission_folder(path)
            if not holds_submissions(folder) or path.endswith(".py"):
                out.add(folder)
        return sorted(out)

    def describe(self, branch: str) -> str:
        if self.side_branch:
            return f"merged into {branch} with another branch, its own changes compared with {self.base[:12]}"
        if self.merged:
            return f"merged by {self.commit[:12]}, compared with its first parent {self.base[:12]}"
        if self.unrelated:
            return f"shares no history with {branch}: compared with its tip {self.base[:12]}"
        return f"compared with {branch} at {self.base[:12]}"


def resolve_change(repo: Path, n: int, head: str, branch: Branch) -> PRChange:
    """The records/ paths PR N adds, modifies or renames: merged PRs via their merge commit, others vs the merge base."""
    if branch.contains is not None:
        merged = head in branch.contains
    else:
        merged = git(repo, "merge-base", "--is-ancestor", head, branch.tip, check=False).returncode == 0
    if merged:
        found = merging_commit(repo, head, branch.tip, branch.first_parent)
        if found is None:
            raise GitError(f"PR #{n} ({head[:12]}) is in {branch.name} but no merge commit brings it in")
        merge, base = found
        line = branch.first_parent if branch.first_parent is not None else \
            frozenset(git(repo, "rev-list", "--first-parent", branch.tip).stdout.split())
        side = merge == head and head not in line
        return PRChange(n, head, True, base, merge, changed_records(repo, base, merge), side_branch=side)
    mb = git(repo, "merge-base", branch.tip, head, check=False)
    if mb.returncode != 0 or not mb.stdout.strip():
        # a fork that started from scratch: what it adds or modifies is what differs from the branch's tip
        return PRChange(n, head, False, branch.tip, head, changed_records(repo, branch.tip, head), unrelated=True)
    base = mb.stdout.strip()
    return PRChange(n, head, False, base, head, changed_records(repo, base, head))


def merging_commit(repo: Path, head: str, tip: str, first_parent: frozenset[str] | None = None) -> tuple[str, str] | None:
    """(the commit of `tip`'s first-parent line that brought `head` in, that commit's first parent), for a `head`
    that `tip` already contains; None when no such commit exists (`head` is `tip` itself, or off its line).

    A merged PR is what its merge commit changed against the branch before it; a head that was fast-forwarded or
    pushed straight to the branch is its own merge. `first_parent` (the line's commits, when already read) saves
    asking git whether `head` is on it."""
    def parent(commit: str) -> str:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^1", check=False).stdout.strip()

    if first_parent is not None and head in first_parent:
        merge = head
    else:
        path = git(repo, "rev-list", "--first-parent", "--ancestry-path", f"{head}..{tip}").stdout.split()
        if not path:
            return _side_branch_change(repo, head, tip)
        merge = path[-1]
        if first_parent is None and parent(merge) == head:
            merge = head  # the line's next commit sits on `head`: `head` is on the line itself
    return merge, parent(merge) or EMPTY_TREE


def _side_branch_change(repo: Path, head: str, tip: str) -> tuple[str, str] | None:
    """`head` reached `tip` through the side branch of a merge (another PR's branch that had merged it): the
    first commit of `tip`'s first-parent line that contains it is that merge, and the PR's own change is `head`
    against its merge base with the line just before. Returns (head, that base), or None."""
    line = git(repo, "rev-list", "--first-parent", "--reverse", tip).stdout.split()
    lo, hi = 0, len(line)  # containment is monotone along the line: the first commit that contains head
    while lo < hi:
        mid = (lo + hi) // 2
        if git(repo, "merge-base", "--is-ancestor", head, line[mid], check=False).returncode == 0:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(line) or lo == 0:
        return None
    mb = git(repo, "merge-base", head, line[lo - 1], check=False).stdout.strip()
    return head, mb or EMPTY_TREE


def changed_records(repo: Path, base: str, head: str) -> list[str]:
    """Paths under records/ that `head` adds, modifies or renames relative to `base`."""
    out = git(repo, "diff", "--name-only", "--find-renames", "--diff-filter=AMR",
               "-z", base, head, "--", f"{RECORDS}/").stdout
    return sorted(p for p in out.split("\0") if p)


def submission_folder(path: str) -> str:
    """`records/<track>/<name>` for a file inside a submission folder, else the file's folder."""
    return record_folder(path) or "/".join(PurePosixPath(path).parts[:-1]) or RECORDS


def holds_submissions(folder: str) -> bool:
    """`records/` and `records/<track>/`: a PR that changes a file there (a README, a stray script) changed that
    file, not the submissions below it, which are other PRs' work and are never audited as its own."""
    return len(PurePosixPath(folder).parts) < 3


def _safe_rel(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or any(part in ("..", "", ".git") for part in p.parts):
        raise GitError(f"refusing to extract unsafe path {path!r} from git")
    return p


def extract_folder(repo: Path, commit: str, folder: str, dest: Path, blobs: BlobReader | None = None,
                   keep: Callable[[str], bool] | None = None) -> list[str]:
    """Copy `folder` as it is at `commit` into `dest/folder` (only the files `keep` accepts, when given); of a
    folder that holds submissions (`records/`, `records/<track>/`), only its own files.

    Returns the paths whose blob the clone lacks (a partial clone); the caller decides what that means."""
    recursive = ["-r"] if not holds_submissions(folder) else []
    listing = git(repo, "ls-tree", *recursive, "-l", "-z", "--full-tree", commit, "--", f"{folder}/").stdout
    reader = blobs or BlobReader(repo)
    missing = []
    try:
        for entry in listing.split("\0"):
            if not entry:
                continue
            meta, _, path = entry.partition("\t")
            mode, kind, sha, size_text = meta.split()
            if kind != "blob":
                continue  # submodules
            if keep is not None and not keep(path):
                continue
            rel = _safe_rel(path)
            size = int(size_text) if size_text.isdigit() else 0
            if size > MAX_BLOB_BYTES:
                raise GitError(f"{path}: {size} bytes in git is too large to audit")
            data = reader.read(sha)
            if data is None:
                missing.append(path)
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode == "120000":
                os.symlink(data.decode("utf-8", "replace"), target)  # reported as a symlink, never followed
            else:
                target.write_bytes(data)
    finally:
        if blobs is None:
            reader.close()
    return missing


def pr_targets(repo: Path, n: int, branch: Branch | None = None) -> tuple[tempfile.TemporaryDirectory, list[Target]]:
    """The submission folders PR N adds or modifies, extracted to a temporary folder the caller cleans up."""
    check_repo(repo)
    head = resolve_pr(repo, n)
    branch = branch or read_branch(repo)
    change = resolve_change(repo, n, head, branch)
    if not change.folders:
        raise GitError(f"PR #{n} adds or modifies nothing to audit under {RECORDS}/ ({change.describe(branch.name)})")
    tmp = tempfile.TemporaryDirectory(prefix=f"scorefirst-pr{n}-")
    try:
        root = Path(tmp.name)
        targets = []
        with BlobReader(repo) as blobs:
            for folder in change.folders:
                missing = extract_folder(repo, change.commit, folder, root, blobs)
                if missing:
                    raise GitError(f"PR #{n}: {missing[0]} is missing from the clone (a partial clone?)"
                                     + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
                targets.append(Target(folder, [root.joinpath(*PurePosixPath(folder).parts)], display_root=root,
                                      pr=n, pr_url=pr_url_for(n)))
    except BaseException:
        tmp.cleanup()
        raise
    return tmp, targets
