"""Content-hash cache of per-file audit results, so re-auditing an unchanged folder costs a file read.

The key covers everything a result depends on: the file's bytes, the run environment the analysis asked about,
the names of its sibling modules, the tool version and a hash of the analyzer's own source (so editing a rule
invalidates every entry without a version bump). Of the environment only the keys the analyzer read count
(`EnvReads` notes them): forks copy a script and change the README's run command, usually in keys the script
never reads, and those copies are hits. A content's entry lists the key sets its audits read; a lookup tries
each with this environment's values for those keys, which is exact: an audit that reads the same values
takes the same path. The path a file is reported under is not in the key: the same script
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
from typing import Iterator, Mapping

from audits.results import FileResult, fingerprint

CACHE_FORMAT = "3"
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

    def _material(self, *parts: str) -> str:
        return hashlib.sha256("\0".join([CACHE_FORMAT, self.tool_version, analyzer_hash(), *parts]).encode()).hexdigest()

    def _reads_key(self, content_sha256: str, local_modules: dict[str, str] | None) -> str:
        return self._material("reads", content_sha256, _local(local_modules))

    def _entry_key(self, content_sha256: str, local_modules: dict[str, str] | None, env: Mapping[str, set[str]],
                   reads: list[str] | None) -> str:
        """`reads` None: the audit looked at the whole environment, so all of it is in the key."""
        stated = env_fingerprint(env) if reads is None else json.dumps(
            [(k, sorted(env[k]) if k in env else None) for k in reads])
        return self._material("result", content_sha256, _local(local_modules), stated)

    def _path(self, key: str, suffix: str = ".json") -> Path:
        return self.directory / f"v{CACHE_FORMAT}" / key[:2] / f"{key}{suffix}"

    def _read_sets(self, content_sha256: str, local_modules: dict[str, str] | None) -> list[list[str] | None]:
        try:
            data = json.loads(self._path(self._reads_key(content_sha256, local_modules), ".reads").read_text("utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return [r for r in data if r is None or (isinstance(r, list) and all(isinstance(k, str) for k in r))]

    def find(self, content_sha256: str, env: Mapping[str, set[str]], local_modules: dict[str, str] | None,
             display: str) -> FileResult | None:
        """The cached result of this content under this environment, reported under `display`."""
        for reads in self._read_sets(content_sha256, local_modules):
            try:
                data = json.loads(self._path(self._entry_key(content_sha256, local_modules, env, reads)).read_text(
                    encoding="utf-8"))
                result = FileResult.from_dict(data)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self.hits += 1
            return relabel(result, display)
        self.misses += 1
        return None

    def store(self, content_sha256: str, env: Mapping[str, set[str]], local_modules: dict[str, str] | None,
              reads: list[str] | None, result: FileResult) -> None:
        """Keep `result`, audited under `env` reading the keys `reads` (None: the whole environment)."""
        if not self._usable:
            return
        try:
            self._prepare()
            _write_atomic(self._path(self._entry_key(content_sha256, local_modules, env, reads)),
                          json.dumps(result.to_dict(with_source=True)))
            sets = self._read_sets(content_sha256, local_modules)
            if reads not in sets:  # two processes adding a set at once lose one: a later miss, never a wrong hit
                _write_atomic(self._path(self._reads_key(content_sha256, local_modules), ".reads"),
                              json.dumps(sets + [reads]))
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


def _local(local_modules: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((local_modules or {}).items()))


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


class EnvReads(Mapping[str, set[str]]):
    """The run environment handed to the analyzer, noting every key it asks about (`keys_read`); asking for the
    whole of it (iterating, its size, its items) sets `keys_read` to None: then every key counts."""

    def __init__(self, env: Mapping[str, set[str]]):
        self._env = env
        self._read: set[str] | None = set()

    @property
    def keys_read(self) -> list[str] | None:
        return None if self._read is None else sorted(self._read)

    def _note(self, key: str) -> None:
        if self._read is not None:
            self._read.add(key)

    def __getitem__(self, key: str) -> set[str]:
        self._note(key)
        return self._env[key]

    def get(self, key, default=None):  # type: ignore[override]
        self._note(key)
        return self._env.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)  # type: ignore[arg-type]
        return key in self._env

    def __iter__(self) -> Iterator[str]:
        self._read = None
        return iter(self._env)

    def __len__(self) -> int:
        self._read = None
        return len(self._env)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
