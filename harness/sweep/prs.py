"""Which pull requests a sweep covers: the clone's `refs/pull/N/head` refs, labelled by an optional metadata export.

Git alone knows each PR's head commit and whether the default branch contains it (merged); the metadata file
(`gh pr list --state all --json number,title,author,state,createdAt,mergedAt,url`) adds titles, authors, the
open/closed distinction and the dates GitHub shows. Without it a PR's date is its head commit's committer date.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from core.git import GitError, git

_PULL_HEAD = re.compile(r"^refs/pull/(\d+)/head$")


class SweepInputError(Exception):
    """A one-line reason the sweep cannot start (bad metadata file, bad date)."""


@dataclass
class PRInfo:
    number: int
    head: str
    date: str = ""  # ISO 8601, UTC: metadata createdAt, else the head commit's committer date
    title: str = ""
    author: str = ""
    state: str = ""  # open / closed / merged (metadata); git alone says merged or unmerged later
    merged_at: str = ""
    url: str = ""


def list_pull_heads(repo: Path) -> dict[int, str]:
    """Every `refs/pull/N/head` of the clone: PR number -> head commit."""
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/pull/").stdout
    heads: dict[int, str] = {}
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        m = _PULL_HEAD.match(ref)
        if m:
            heads[int(m.group(1))] = sha.strip()
    return heads


def commit_dates(repo: Path, shas: list[str]) -> dict[str, str]:
    """Committer dates (ISO 8601, UTC) of many commits in one git call; commits the clone lacks are left out."""
    if not shas:
        return {}
    import os
    import subprocess

    env = dict(os.environ, LC_ALL="C", TZ="UTC")
    env.pop("GIT_DIR", None)
    proc = subprocess.run(["git", "-C", str(repo), "log", "--no-walk=unsorted", "--stdin", "--format=%H %ct"],
                          input="\n".join(sorted(set(shas))) + "\n", capture_output=True, text=True, env=env,
                          timeout=300)
    if proc.returncode != 0:
        raise GitError(f"git log failed in {repo}: {proc.stderr.strip().splitlines()[-1:] or ['?']}")
    out = {}
    for line in proc.stdout.splitlines():
        sha, _, ts = line.partition(" ")
        if ts.strip().isdigit():
            out[sha] = iso_utc(datetime.fromtimestamp(int(ts), tz=timezone.utc))
    return out


def iso_utc(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(text: str) -> datetime:
    """`2026-03-20`, or an ISO 8601 time (with `Z` or an offset); a date alone is midnight UTC."""
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise SweepInputError(f"--since {text!r}: expected a date like 2026-03-20 or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def load_metadata(path: Path) -> dict[int, dict]:
    """PR number -> its entry in a `gh pr list --json ...` export (a JSON list of objects with `number`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepInputError(f"--metadata {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SweepInputError(f"--metadata {path}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise SweepInputError(f"--metadata {path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise SweepInputError(f"--metadata {path}: expected a JSON list of pull requests "
                              "(gh pr list --json number,title,author,state,createdAt,mergedAt)")
    out: dict[int, dict] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("number"), int) or isinstance(item["number"], bool):
            raise SweepInputError(f"--metadata {path}: entry {i} has no integer \"number\"")
        out[item["number"]] = item
    return out


def _text(v: object) -> str:
    return v if isinstance(v, str) else ""


def _time(v: object) -> str:
    if not isinstance(v, str) or not v:
        return ""
    try:
        return iso_utc(parse_date(v))
    except SweepInputError:
        return ""


def label(info: PRInfo, meta: dict | None) -> PRInfo:
    """Fill title, author, state, dates and URL from a metadata entry (`author` may be a login or {"login": ...})."""
    if not meta:
        return info
    author = meta.get("author")
    info.title = _text(meta.get("title"))
    info.author = _text(author.get("login")) if isinstance(author, dict) else _text(author)
    info.state = _text(meta.get("state")).lower()
    info.merged_at = _time(meta.get("mergedAt"))
    info.url = _text(meta.get("url"))
    created = _time(meta.get("createdAt"))
    if created:
        info.date = created
    return info
