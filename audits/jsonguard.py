"""Limits on a submission.json checked before it is parsed: it comes from the PR, so it may be built to break the
parser (nesting deep enough for a RecursionError, integers too long for `int()`, megabytes of text) or to slip a
non-number score past the checks (`NaN` and `Infinity`, which Python's json module accepts and JSON does not).
Each problem is returned located, for a format FAIL, instead of an internal error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 1_000_000  # real ones are a few kilobytes
MAX_DEPTH = 64  # real ones nest 3 deep (seed_results)
MAX_NUMBER_CHARS = 100  # a float prints in under 25; Python refuses int() of more than 4,300 digits

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]|-?[\d.][\w.+-]*|-?[A-Za-z_]\w*')


@dataclass(frozen=True)
class JsonProblem:
    line: int
    column: int
    message: str


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def precheck(text: str) -> JsonProblem | None:
    """The first limit the text breaks, located; None when it is safe to hand to `json.loads`."""
    if len(text) > MAX_BYTES:
        return JsonProblem(1, 1, f"is {len(text):,} characters; a submission.json is at most {MAX_BYTES:,}")
    depth = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == '"':
            continue
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return JsonProblem(*_position(text, m.start()), f"nests deeper than {MAX_DEPTH} levels")
        elif c in "]}":
            depth -= 1
        elif tok.lstrip("-") in ("NaN", "Infinity"):
            return JsonProblem(*_position(text, m.start()), f"{tok} is not a JSON number (a score must be finite)")
        elif (c.isdigit() or c in "-.") and len(tok) > MAX_NUMBER_CHARS:
            return JsonProblem(*_position(text, m.start()),
                               f"a number of {len(tok):,} characters; numbers are at most {MAX_NUMBER_CHARS}")
    return None
