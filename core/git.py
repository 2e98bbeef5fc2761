"""Git access for every command that reads a clone (audit --repo, sweep, gate): one runner, one error type.

Git runs without a terminal prompt or askpass and in the C locale, with GIT_DIR/GIT_WORK_TREE dropped so the
repository named on the command line is the one read. Nothing is checked out: blobs come from one `git cat-file
--batch` process (`BlobReader`)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 60
DEFAULT_BRANCHES = ("origin/main", "main", "origin/master", "master")


class GitError(Exception):
    """A one-line reason git could not answer (not installed, timed out, failed, unexpected reply)."""


def _env() -> dict[str, str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", LC_ALL="C")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    return env


def git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT_S, check: bool = True,
        binary: bool = False) -> subprocess.CompletedProcess:
    """`git -C repo args...`; with `check`, a non-zero exit raises GitError with git's last stderr line."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=timeout, env=_env(),
                              stdin=subprocess.DEVNULL, text=not binary)
    except FileNotFoundError:
        raise GitError("git is not installed (needed for --repo)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f} s in {repo}") from None
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", "replace")
        last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        raise GitError(f"git {' '.join(args[:2])} failed in {repo}: {last}")
    return proc


def has_commit(repo: Path, ref: str) -> bool:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode == 0


def check_repo(repo: Path) -> None:
    """GitError unless `repo` is a folder holding a git repository."""
    if not repo.is_dir():
        raise GitError(f"--repo {repo}: no such folder")
    if git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise GitError(f"--repo {repo}: not a git repository")


class BlobReader:
    """One `git cat-file --batch` process for every blob of a run (a subprocess per file costs more than the file)."""

    def __init__(self, repo: Path):
        try:
            self._proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        except FileNotFoundError:
            raise GitError("git is not installed (needed for --repo)") from None

    def read(self, sha: str) -> bytes | None:
        """The blob's bytes, or None when the clone lacks the object (a partial or shallow clone)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(sha.encode("ascii") + b"\n")
            self._proc.stdin.flush()
            header = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            raise GitError("git cat-file --batch stopped unexpectedly") from None
        parts = header.split()
        if len(parts) != 3:
            if header.endswith(b" missing\n"):
                return None
            raise GitError(f"git cat-file --batch: unexpected reply {header[:80]!r}")
        size = int(parts[2])
        data = self._proc.stdout.read(size)
        self._proc.stdout.read(1)  # the newline after the content
        return data

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> "BlobReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
