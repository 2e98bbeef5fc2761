"""Content-hash cache of per-file audit results, so re-auditing an unchanged folder costs a file read.

The key covers everything a result depends on: the file's bytes, the effective run environment, the names of
its sibling modules, the tool version and a hash of the analyzer's own source (so editing a rule invalidates
every entry without a version bump). The path a file is reported under is not in the key: the same script
copied into another folder (forks do it all the time) is a hit, relabelled with its own path (findings,
suppressions, messages and the path-dependent fingerprints). Entries are JSON files written
atomically; a corrupt or unreadable entry is a miss, and a cache that cannot be written is silently skipped:
the cache only ever saves time, it never changes a result.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from audits.results import FileResult, fingerprint

CACHE_FORMAT = "2"
ENV_VAR = "SCOREFIRST_CACHE_DIR"
DEFAULT_DIRNAME = ".scorefirst-cache"


def default_cache_dir() -> Path:
    """`$SCOREFIRST_CACHE_DIR`, else `.scorefirst-cache` in the current directory."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.cwd() / DEFAULT_DIRNAME


@lru_cache(maxsize=1)
def analyzer_hash() -> str:
    """sha256 over the analyzer's Python source: the `audits` package without the bundled examples and without
    `outputs/` (views of results: editing how a result is printed must not throw the cached results away)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("examples/", "outputs/")) or "__pycache__" in p.parts:
            continue
        h.update(rel.encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def env_fingerprint(env: dict[str, set[str]]) -> str:
    return json.dumps(sorted((k, sorted(v)) for k, v in env.items()))


class Cache:
    """A directory of cached `FileResult`s; `hits`, `misses` and `writes` count this process's use."""

    def __init__(self, directory: str | os.PathLike[str], tool_version: str):
        self.directory = Path(directory)
        self.tool_version = tool_version
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._usable = True

    def key(self, content_sha256: str, env: dict[str, set[str]], local_modules: dict[str, str] | None = None,
            linked_sha256: Sequence[str] = ()) -> str:
        """Content, tool, environment, the folder's module names, and the contents of the modules audited with it."""
        local = ",".join(f"{k}={v}" for k, v in sorted((local_modules or {}).items()))
        material = "\0".join([CACHE_FORMAT, self.tool_version, analyzer_hash(), content_sha256,
                              env_fingerprint(env), local, ",".join(linked_sha256)])
        return hashlib.sha256(material.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"v{CACHE_FORMAT}" / key[:2] / f"{key}.json"

    def get(self, key: str, display: str) -> FileResult | None:
        """The cached result, reported under `display`."""
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            result = FileResult.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return relabel(result, display)

    def put(self, key: str, result: FileResult) -> None:
        if not self._usable:
            return
        target = self._path(key)
        try:
            self._prepare()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(result.to_dict(with_source=True), fh)
                os.replace(tmp, target)
            except BaseException:
                _unlink(tmp)
                raise
        except OSError:
            self._usable = False  # read-only or full disk: audit on without caching
            return
        self.writes += 1

    def _prepare(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / ".gitignore").write_text("# created by scorefirst\n*\n", encoding="utf-8")
        (self.directory / "CACHEDIR.TAG").write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n# scorefirst audit cache; safe to delete\n",
            encoding="utf-8")


def relabel(result: FileResult, display: str) -> FileResult:
    """`result` as if the file had been audited under the path `display` (fingerprints recomputed as the engine
    computes them: rule, path, normalized snippet and the occurrence among equal snippets, in finding order)."""
    old = result.path
    if old == display:
        return result
    result.path = display
    if result.error:
        result.error = result.error.replace(old, display)
    old_dir, new_dir = old.rpartition("/")[0], display.rpartition("/")[0]

    def moved(p: str) -> str:  # a linked module next to the file moves with it
        if p == old:
            return display
        if p and p.rpartition("/")[0] == old_dir:
            return (new_dir + "/" if new_dir else "") + p.rpartition("/")[2]
        return p

    seen: dict[tuple, int] = {}
    for f in result.findings:
        f.path = moved(f.path)
        for r in f.related:
            r.path = moved(r.path)
        f.message = f.message.replace(old, display)
        f.status_reason = f.status_reason.replace(old, display)
        key = (f.rule_id, " ".join(f.snippet.split()))
        seen[key] = seen.get(key, -1) + 1
        f.fingerprint = fingerprint(f.rule_id, f.path, f.snippet, seen[key])
    for sup in result.suppressions:
        if sup.path == old:
            sup.path = display
    return result


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
