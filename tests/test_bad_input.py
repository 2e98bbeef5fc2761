"""Untrusted input: every bad file gives one clear line, no traceback, and the other files are still audited."""
from __future__ import annotations

import base64
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from audits.api import audit_paths
from audits.source import InputError, SourceFile

REPO = Path(__file__).resolve().parents[1]


def one(path: Path):
    res = audit_paths([path])
    assert len(res.files) == 1
    return res.files[0]


def test_empty_file(write):
    fr = one(write("empty.py", "\n  \n"))
    assert fr.error_kind == "empty" and fr.error.endswith("empty.py: empty file")


def test_binary_file(write):
    fr = one(write("bin.py", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256))))
    assert fr.error_kind == "binary" and "binary file" in fr.error


def test_non_utf8(write):
    fr = one(write("latin.py", "x = 1\ny = 'caf\xe9'\n".encode("latin-1")))
    assert fr.error_kind == "encoding"
    assert fr.error.endswith("latin.py:2: not valid UTF-8 (byte 0xe9 at offset 14)")


def test_syntax_error_has_location_and_exit_2(write, cli):
    p = write("syn.py", "x = 1\nif True\n    pass\n")
    fr = one(p)
    assert fr.error_kind == "syntax"
    assert fr.error == f"{p.as_posix()}:2:8: syntax error: expected ':'"
    r = cli("audit", p)
    assert r.code == 2
    assert r.last_err_line == f"scorefirst: exit 2: 1 file could not be audited: {p.as_posix()}:2:8: syntax error: expected ':'"


def test_python_312_syntax_parses_on_311(write):
    fr = one(write("py312.py", 'x = 1\nprint(f"{"nested"} {x!r:>{10}}")\ntype Alias = list[int]\n'
                               'def first[T](xs: list[T]) -> T:\n    return xs[0]\n'))
    assert fr.error is None, fr.error


def test_five_megabyte_file(write):
    blob = "ab" * 2_500_000
    p = write("big.py", f"import os\nDATA = \"{blob}\"\nprint(len(DATA))\n")
    assert p.stat().st_size > 5_000_000
    t = time.perf_counter()
    fr = one(p)
    assert fr.error is None and fr.lines == 4
    assert time.perf_counter() - t < 30


def test_line_cap_refuses_with_a_located_message(write):
    from audits.engine import MAX_LINES

    fr = one(write("long.py", "x = 1\n" * (MAX_LINES + 1)))
    assert fr.error_kind == "too-large"
    assert fr.error.endswith(f"long.py: {MAX_LINES + 2} lines exceeds the analyzer's {MAX_LINES}-line limit (about 27 KB of memory per line)")


def test_file_at_the_line_cap_is_audited(write):
    from audits.engine import MAX_LINES

    fr = one(write("at_cap.py", "x = 1\n" * (MAX_LINES - 1)))
    assert fr.error is None


@pytest.mark.parametrize("name,text", [
    ("parens", "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"),
    ("sum", "x = " + "+".join(["1"] * 100_000) + "\n"),
])
def test_deeply_nested_expressions(write, name, text):
    t = time.perf_counter()
    fr = one(write(f"{name}.py", text))
    assert fr.error_kind == "too-complex"
    assert "Python itself cannot compile this" in fr.error and "\n" not in fr.error
    assert time.perf_counter() - t < 10


def test_moderately_deep_expression_does_not_crash(write):
    # Deep enough for CPython to compile, deep enough to exhaust the analyzer's recursion: an error, not a crash.
    fr = one(write("deep.py", "x = " + "+".join(["1"] * 2500) + "\n"))
    assert fr.error is None or fr.error_kind == "too-complex"


def test_decompression_bomb_in_packed_code(write, tmp_path):
    comp = lzma.LZMACompressor(preset=0)
    zeros = bytes(1 << 20)
    packed = b"".join(comp.compress(zeros) for _ in range(200)) + comp.flush()  # 200 MB of zeros, ~30 KB packed
    payload = base64.b85encode(packed).decode()
    p = write("bomb/train_gpt.py", f"import lzma, base64\nexec(lzma.decompress(base64.b85decode('{payload}')))\n")
    # In a child process so its peak memory can be measured on its own.
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run([sys.executable, '-m', 'harness', 'audit', sys.argv[1], '--no-cache', "
             "'--format', 'concise'], capture_output=True, text=True); "
             "print(r.returncode); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe, str(p)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)
    code, maxrss_kb, *out = proc.stdout.splitlines()
    assert code == "0", proc.stderr  # a warning (cannot verify), not a crash and not a file error
    assert int(maxrss_kb) < 180_000, f"peak RSS {int(maxrss_kb) // 1024} MB: the bomb was inflated"
    assert any("SF-EXEC-001 [warning]" in ln and "decompression bomb" in ln for ln in out), out
    assert "Traceback" not in proc.stderr


def test_missing_path(write, cli, samples):
    good = write("good/train_gpt.py", samples.illegal)
    r = cli("audit", good, write("x", "").parent / "missing.py")
    assert r.code == 2
    assert f"{(good.parent.parent / 'missing.py').as_posix()}: no such file or directory [missing]" in r.out
    assert "PG-TTT-001" in r.out


def test_bad_env(cli, write, samples):
    r = cli("audit", write("e/t.py", samples.illegal), "--env", "1BAD=x")
    assert r.code == 2 and r.last_err_line == "scorefirst: exit 2: usage error: --env expects KEY=VALUE, got '1BAD=x'"


def test_submission_json_invalid_is_an_error_entry(write, samples, cli):
    write("sj/train_gpt.py", samples.illegal)
    p = write("sj/submission.json", '{"name": "x",\n "val_bpb": }\n')
    res = audit_paths([p.parent])
    errors = {fr.path.rsplit("/", 1)[-1]: fr for fr in res.errors}
    assert errors["submission.json"].error_kind == "submission-json"
    assert errors["submission.json"].error.endswith("submission.json:2:13: invalid JSON: Expecting value")
    assert res.submission == {}
    assert any(f.rule_id == "PG-TTT-001" for f in res.findings)


def test_folder_of_bad_files(write, cli_proc, samples, tmp_path):
    """Everything at once, through a real process: each problem one line, the good file audited, exit 2.
    An empty module inside a folder (an empty `__init__.py`, a placeholder) holds no code: skipped, not an error."""
    d = tmp_path / "sub"
    good = write("sub/train_gpt.py", samples.illegal)
    write("sub/empty.py", "")
    write("sub/binary.py", b"\x00\x01\x02")
    write("sub/latin.py", b"x = '\xe9'\n")
    write("sub/syntax.py", "def f(:\n")
    write("sub/nested.py", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    write("sub/.hidden/skipped.py", "def f(:\n")
    write("sub/__pycache__/skipped.py", "def f(:\n")
    write("sub/venv/lib/skipped.py", "def f(:\n")
    os.symlink(good, d / "link.py")
    os.symlink(d / ".hidden", d / "linkdir")
    unreadable = write("sub/unreadable.py", "x = 1\n")
    unreadable.chmod(0)
    try:
        r = cli_proc("audit", "sub", "--no-cache", "--jobs", "2", cwd=tmp_path)
    finally:
        unreadable.chmod(0o644)
    assert r.code == 2
    assert "Traceback" not in r.err and "Traceback" not in r.out
    lines = r.out.splitlines()
    expect = {
        "sub/binary.py: binary file (contains NUL bytes) [binary]",
        "sub/latin.py:1: not valid UTF-8 (byte 0xe9 at offset 5) [encoding]",
        "sub/syntax.py:1:7: syntax error: invalid syntax [syntax]",
        "sub/nested.py:1: too many nested parentheses; Python itself cannot compile this [too-complex]",
        "sub/link.py: is a symbolic link; not followed [symlink]",
        "sub/linkdir: is a symbolic link to a folder; not followed [symlink]",
    }
    # root can read a chmod-000 file, so that case is only checked when the tests do not run as root
    if os.geteuid() != 0:
        expect.add("sub/unreadable.py: permission denied [unreadable]")
    missing = expect - set(lines)
    assert not missing, r.out
    assert "skipped.py" not in r.out
    assert "sub/train_gpt.py:8:9: PG-TTT-001 [error]" in r.out.replace("\\", "/")
    n = len(expect)
    assert r.last_err_line.startswith(f"scorefirst: exit 2: {n} files could not be audited: ")


def test_unreadable_file_alone(tmp_path):
    """A chmod-000 file is reported as unreadable. Root reads such files, so as root the check runs in a forked
    child that drops to `nobody` (nothing is exec'd or imported there: the checkout may be owner-only)."""
    folder = Path(tempfile.mkdtemp(prefix="sf-unreadable-"))
    try:
        folder.chmod(0o755)
        p = folder / "u.py"
        p.write_text("x = 1\n")
        p.chmod(0)
        if os.geteuid() != 0:
            fr = one(p)
            assert fr.error_kind == "unreadable" and fr.error.endswith("u.py: permission denied")
            return
        from audits.source import read_source

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop privileges, try to read, report, exit without running pytest's teardown
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                try:
                    read_source(p, "u.py")
                    msg = "read"
                except InputError as e:
                    msg = f"{e.kind} {e}"
                os.write(w, msg.encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as fh:
            got = fh.read()
        os.waitpid(pid, 0)
        assert got == "unreadable u.py: permission denied"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- property: the analyzer raises nothing but InputError ---------------------------------------------------

hypothesmith = pytest.importorskip("hypothesmith")
PROPERTY = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def _never_crashes(code: str) -> None:
    from audits.engine import audit_source

    src = SourceFile("gen.py", code, "0" * 64)
    try:
        audit_source(src, {})
    except InputError:
        pass


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@PROPERTY
@given(hypothesmith.from_grammar())
def test_audit_source_never_crashes_on_grammar_programs(code):
    _never_crashes(code)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@PROPERTY
@given(hypothesmith.from_node())
def test_audit_source_never_crashes_on_cst_programs(code):
    _never_crashes(code)


@pytest.mark.parametrize("text,message", [
    ('{"a":' * 1000 + "1" + "}" * 1000, "nest"),
    ('{"val_bpb": ' + "9" * 5000 + "}", "a number of 5,000 characters"),
    ('{"val_bpb": NaN}', "NaN"),
])
def test_hostile_submission_json_is_a_located_error(tmp_path, text, message):
    """A folder's submission.json comes from the PR: it never crashes the audit (RecursionError, int limits)."""
    sub = tmp_path / "run"
    sub.mkdir()
    (sub / "train_gpt.py").write_text("print('ok')\n")
    (sub / "submission.json").write_text(text)
    res = audit_paths([sub])
    err = next(fr for fr in res.files if fr.error)
    assert err.error_kind == "submission-json" and "submission.json:1:" in err.error and message in err.error
    assert any(fr.path.endswith("train_gpt.py") and fr.error is None for fr in res.files)


def test_latin1_coding_cookie_is_read_as_declared(write):
    """PEP 263: a file that declares latin-1 is valid Python; only an undeclared non-UTF-8 byte is an error."""
    fr = one(write("latin.py", b"# -*- coding: latin-1 -*-\nx = '\xe9'\nprint(x)\n"))
    assert fr.error is None and "é" in fr.source
