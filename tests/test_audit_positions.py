"""Positions must equal libcst's PositionProvider for every node the analysis can reach."""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from audits.positions import Positions
from audits.registry import all_rules
from audits.walk import reset_children_cache, walk

FIXTURES = Path(__file__).parent / "fixtures" / "audit"

AWKWARD = {
    "statements": '''
        # leading comment

        import os, sys as system; from a.b import (c,
            d as e)
        x = 1 ; y = 2;
        z = \\
            3
        s = """multi
        line"""
        def  f ( a , b = lambda q : q + 1 ,
                *args , c : int = 2 , ** kw ) -> "str" :
            # body comment
            if a :  # trailing
                return  a
            elif (b and
                  c) :
                pass
            elif b: return 1
            else : return 2
            # footer comment of f

        @decorator
        # between decorators
        @other(1,
               2)

        def g(): pass
        class  C ( Base , metaclass = M ) :
            attr : int = 3
            def m(self): return self.attr ; x = 1
        async def h():
            async with a as b, c as (d, e):
                await b
            async for i in range(3): print(i)
            with (open("x") as f1,
                  open("y") as f2):
                pass
        def empty_params(
        ):
            pass
    ''',
    "clauses": '''
        try:
            pass
        except (ValueError,
                TypeError) as err:
            raise
        except Exception: pass
        else:
            y = 1
        finally: z = 2
        try: x = 1
        finally:
            pass
        for i in range(10):
            continue
        else:
            pass
        while x: break
        else: pass
        if x:
            pass
            # indented comment after the block
        # dedented comment
        elif y:
            pass
    ''',
    "match": '''
        match command.split():
            case [action]:
                pass
            case [action, obj] if obj:
                print(
                    obj)
            case Point(x=0, y=0) | {"k": _}:
                pass
            case _: pass
    ''',
    "non_ascii_and_tabs": 'ñ = "héllo"; é = 1\nif ñ: print("ü")  ; w = 3\nif True:\n\tt = 1\n\tif t:\n\t\tm = "€" + f"{t}"\n',
    "crlf": "a = 1\r\nif a:\r\n    b = (1,\r\n         2)\r\nelse:\r\n    c = 3\r\n",
    "py312_fstrings": 'x = f"{"nested"} {x!r:>{10}}"\ndef f():\n    return f\'{\'a\' + f\'{"b"}\'}\'\ny = f"""{\n    "m"\n}"""\n',
    "py312_type_statement": "type Alias = list[int]\nx = (1 +\n     2)\n",
    "parenthesized_decorator": "@(\n  foo)\ndef f(): pass\n",
}


def _sources():
    for p in sorted(FIXTURES.glob("*.py")):
        yield p.name, p.read_text(encoding="utf-8")
    for name, code in AWKWARD.items():
        yield name, textwrap.dedent(code).lstrip("\n") if "\r" not in code else code
    for rule in all_rules():
        for i, case in enumerate(list(rule.VALID) + list(rule.INVALID)):
            yield f"{rule.id}-{i}", textwrap.dedent(case.code).strip("\n") + "\n"


SOURCES = list(_sources())


def _tree(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


@pytest.mark.parametrize("name,text", SOURCES, ids=[n for n, _ in SOURCES])
def test_positions_equal_position_provider(name, text):
    module = cst.parse_module(text)
    reset_children_cache(module)
    want = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    got = Positions(module, text, _tree(text))
    nodes = [n for n in walk(module, into_defs=True) if n is not module]
    lines = [got.line(n) for n in nodes]  # lines first: the fast path, before any range fills the caches
    for node, line in zip(nodes, lines):
        r = want[node]
        assert line == r.start.line, (type(node).__name__, line, r)
        assert got.range(node) == (r.start.line, r.start.column, r.end.line, r.end.column), type(node).__name__


def test_only_unreadable_files_fall_back():
    """3.12 f-strings are read through a blanked copy; a `type` statement or a decorator split across lines
    (where ast and the CST disagree on the statement's first line) fall back to PositionProvider."""
    fell_back = []
    for name, text in SOURCES:
        if name not in AWKWARD and _tree(text) is not None:
            continue
        module = cst.parse_module(text)
        reset_children_cache(module)
        pos = Positions(module, text, _tree(text))
        for n in walk(module, into_defs=True):
            if n is not module:
                pos.range(n)
        if pos._full is not None:
            fell_back.append(name)
    assert fell_back == ["py312_type_statement", "parenthesized_decorator"]


def test_form_feed_and_unicode_line_separators_do_not_shift_lines(tmp_path):
    """ast and libcst break lines only at \\n, \\r\\n and \\r; a form feed (page break in old sources) and a
    U+2028 inside a string literal must not move the line or snippet of a later finding."""
    from audits.api import audit_paths
    from audits.outputs import terminal
    from audits.source import decode_source
    from audits.engine import audit_source

    text = ("import os\n"
            "\f\n"
            "SEP = \"a\u2028b\x85c\vd\"\n"
            "\f# section two\n"
            "import urllib.request\n"
            "print(os, SEP, urllib.request)\n")
    assert text.splitlines()[4] != "import urllib.request"  # what the old splitting got wrong
    (tmp_path / "train_gpt.py").write_text(text, encoding="utf-8", newline="")
    for fr in (audit_source(decode_source(text.encode(), "train_gpt.py"), {}),
               audit_paths([tmp_path / "train_gpt.py"]).files[0]):
        net = [f for f in fr.findings if f.rule_id == "PG-NET"]
        assert [(f.line, f.snippet, f.column, f.end_column) for f in net] == [(5, "import urllib.request", 1, 22)]
    shown = terminal.full([audit_paths([tmp_path / "train_gpt.py"])])
    excerpt = [ln for ln in shown.split("\n") if ln.lstrip()[:3] in ("4 |", "5 |", "6 |")]
    assert [ln.split("|", 1)[0].strip() for ln in excerpt] == ["4", "5", "6"], shown
    assert "section two" in excerpt[0] and excerpt[1].endswith("| import urllib.request"), shown
