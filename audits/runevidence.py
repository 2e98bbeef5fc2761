"""What a submission's own documents say about the run that produced its score.

A path switched off only by an environment default (`TTT_ENABLED` defaults to `"0"`, no run command sets it) may
still be the one that ran: the README describes a TTT score, the logs print TTT phases, submission.json names the
method. When the folder's README, submission.json or logs mention the feature such a key switches, the
configuration is not decided by the default alone, and an illegal path behind it is a warning that names the key
(`default_mention`). Nothing here is run or imported; files are read as text, capped.
"""
from __future__ import annotations

import re
from pathlib import Path

_DOC_SUFFIXES = (".md", ".log", ".txt", ".json")
_MAX_BYTES = 4_000_000
_FLAG_PARTS = re.compile(r"^(use|enable|enabled|disable|run|do|with)_|_(enabled|enable|on|flag|mode|active|use)$")
_NON_FEATURE = re.compile(r"^(seed|rank|world_size|local_rank|data_path|run_id|iterations|max_wallclock_seconds)$")


def folder_text(folder: Path) -> str:
    """README*, submission.json and logs (*.log, *.txt) of a folder, lower-cased, each capped."""
    parts = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return ""
    for p in entries:
        if p.is_symlink() or not p.is_file() or p.suffix.lower() not in _DOC_SUFFIXES:
            continue
        if p.suffix.lower() == ".json" and p.name != "submission.json":
            continue
        try:
            with open(p, "rb") as fh:
                parts.append(fh.read(_MAX_BYTES).decode("utf-8", "replace").lower())
        except OSError:
            continue
    return "\n".join(parts)


def feature_stem(key: str) -> str:
    """`TTT_ENABLED` -> `ttt`, `USE_NGRAM_EVAL` -> `ngram_eval`, `SLOT_STEPS` -> `slot_steps`."""
    stem = key.lower()
    while True:
        shorter = _FLAG_PARTS.sub("", stem)
        if shorter == stem:
            return stem
        stem = shorter


def default_mention(keys: list[str], text: str) -> tuple[str, str] | None:
    """The first `KEY=value` whose feature the folder's documents mention, with the word found."""
    for item in keys:
        key = item.split("=", 1)[0]
        stem = feature_stem(key)
        if len(stem) < 3 or _NON_FEATURE.match(stem):
            continue
        pattern = r"(?<![a-z0-9])" + r"[ _-]?".join(map(re.escape, stem.split("_"))) + r"(?![a-z0-9])"
        m = re.search(pattern, text)
        if m:
            return item, m.group(0)
    return None
