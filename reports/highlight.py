"""Source text as highlighted HTML, one `Markup` string per line, so every line can carry its own anchor and marks.

Pygments tokenizes; we escape each token ourselves and split tokens that span lines (triple-quoted strings), so
no tag is ever left open across a line. Token classes are a short fixed set (`k`, `s`, `c`, ...) styled by our own
CSS, which keeps the pages independent of the Pygments style sheets of a given version. Invisible and
direction-changing characters (Trojan Source, ANSI escapes, NUL) are shown as visible marks, never passed through.
"""
from __future__ import annotations

import unicodedata

from markupsafe import Markup, escape
from pygments.lexers import PythonLexer
from pygments.token import Comment, Keyword, Name, Number, Operator, String, Token, _TokenType

# Above this size the source is shown plain (still escaped and anchored): highlighting megabytes buys nothing.
MAX_HIGHLIGHT_CHARS = 2_000_000

_CLASSES: list[tuple[_TokenType, str]] = [
    (String.Doc, "sd"),
    (String, "s"),
    (Comment, "c"),
    (Keyword, "k"),
    (Name.Builtin.Pseudo, "bp"),
    (Name.Builtin, "nb"),
    (Name.Function, "nf"),
    (Name.Class, "nc"),
    (Name.Decorator, "nd"),
    (Name.Namespace, "nn"),
    (Number, "m"),
    (Operator.Word, "k"),
    (Operator, "o"),
]

# Characters that change how the text around them is displayed, or that do not display at all.
_BIDI = {"\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067",
         "\u2068", "\u2069"}
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}


def _css_class(ttype: _TokenType) -> str:
    for parent, cls in _CLASSES:
        if ttype in parent:
            return cls
    return ""


def normalize_newlines(text: str) -> str:
    """Line breaks as the auditor counts them: \\r\\n and \\r are one line break each, nothing else is."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_lines(text: str) -> list[str]:
    lines = normalize_newlines(text).split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return lines


def visible(text: str) -> Markup:
    """Escape `text`, and show control, invisible and bidirectional characters as marked code points."""
    out: list[str] = []
    plain: list[str] = []
    for ch in text:
        o = ord(ch)
        special = (o < 32 and ch != "\t") or o == 127 or 0x80 <= o < 0xA0 or ch in _BIDI or ch in _INVISIBLE
        if not special:
            plain.append(ch)
            continue
        if plain:
            out.append(str(escape("".join(plain))))
            plain = []
        name = unicodedata.name(ch, "control character")
        out.append(f'<span class="ctl" title="U+{o:04X} {escape(name)}">U+{o:04X}</span>')
    if plain:
        out.append(str(escape("".join(plain))))
    return Markup("".join(out))


def highlight_lines(text: str) -> list[Markup]:
    """The source as one highlighted, escaped HTML fragment per line (1-based line n is item n-1)."""
    lines = split_lines(text)
    if len(text) > MAX_HIGHLIGHT_CHARS:
        return [visible(line) for line in lines]
    out: list[list[str]] = [[]]
    lexer = PythonLexer(stripnl=False, stripall=False, ensurenl=False, tabsize=0)
    for ttype, value in lexer.get_tokens(normalize_newlines(text)):
        cls = _css_class(ttype) if ttype is not Token.Text else ""
        parts = value.split("\n")
        for i, part in enumerate(parts):
            if i:
                out.append([])
            if not part:
                continue
            html = str(visible(part))
            out[-1].append(f'<span class="{cls}">{html}</span>' if cls else html)
    rendered = [Markup("".join(chunks)) for chunks in out]
    # The lexer and the plain split agree on line breaks; pad or trim defensively so anchors never shift.
    if len(rendered) > len(lines):
        rendered = rendered[: len(lines)]
    while len(rendered) < len(lines):
        rendered.append(visible(lines[len(rendered)]))
    return rendered
