"""The sweep's resume journal: one finished PR record per file, next to the audit cache.

A record is keyed by everything it depends on: the PR's head commit, the default branch's tip (which decides
merged or not and the merge base), the tool version and the analyzer's source hash. Records are written
atomically the moment a PR finishes, so an interrupted sweep loses at most the PRs in flight, and a repeated
sweep of an unchanged repository reads records instead of auditing.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from audits.cache import analyzer_hash

JOURNAL_FORMAT = "1"


class Journal:
    def __init__(self, directory: Path, tool_version: str, branch_tip: str):
        self.directory = directory / f"sweep-v{JOURNAL_FORMAT}"
        self._salt = "\0".join([JOURNAL_FORMAT, tool_version, analyzer_hash(), _sweep_hash(), branch_tip])
        self._usable = True

    def _path(self, number: int, head: str) -> Path:
        key = hashlib.sha256(f"{self._salt}\0{number}\0{head}".encode()).hexdigest()
        return self.directory / key[:2] / f"{key}.json"

    def get(self, number: int, head: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(number, head).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("number") != number or data.get("head") != head:
            return None
        return data

    def put(self, record: dict[str, Any]) -> None:
        if not self._usable:
            return
        target = self._path(record["number"], record["head"])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(record, fh, separators=(",", ":"))
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            self._usable = False  # a read-only cache only costs the resume


def _sweep_hash() -> str:
    """The sweep's own fingerprinting code: records made by another version are not reused."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("fingerprints.py", "worker.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()
