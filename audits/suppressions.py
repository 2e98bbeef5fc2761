"""`# scorefirst: ignore[PG-TTT-003] reason` — named-only suppressions with a required reason.

A suppression on a line of code applies to that line; on a line of its own, to the next code line. A blanket
form (no rule ids) is not accepted: an unnamed suppression would hide a later, unrelated violation.
"""
from __future__ import annotations

import io
import re
import tokenize

from audits.results import Suppression

_DIRECTIVE = re.compile(r"#\s*scorefirst:\s*ignore\[(?P<ids>[^\]]*)\](?P<reason>.*)$")
_MARKER = re.compile(r"#\s*scorefirst:\s*ignore\[")


def parse_suppressions(text: str, path: str) -> tuple[list[Suppression], dict[int, list[Suppression]]]:
    """All suppressions of a file, and the code line each one applies to."""
    found: list[Suppression] = []
    applies: dict[int, list[Suppression]] = {}
    comments: list[tuple[int, str, bool]] = []
    code_lines: set[int] = set()
    if not _MARKER.search(text):
        return found, applies  # no directive anywhere: skip tokenizing the file
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                own_line = tok.line[: tok.start[1]].strip() == ""
                comments.append((tok.start[0], tok.string, own_line))
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                code_lines.update(range(tok.start[0], tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return found, applies
    for line, comment, own_line in comments:
        m = _DIRECTIVE.search(comment)
        if not m:
            continue
        ids = [x.strip() for x in m.group("ids").split(",") if x.strip()]
        sup = Suppression(path, line, ids, m.group("reason").strip(" -—:"))
        found.append(sup)
        target = line
        if own_line:
            target = next((n for n in range(line + 1, line + 50) if n in code_lines), line)
        applies.setdefault(target, []).append(sup)
    return found, applies
