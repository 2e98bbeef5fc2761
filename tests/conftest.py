"""Shared fixtures for the command-line, output, SARIF, git PR, bad-input and cache tests.

Nothing here is autouse: a test opts in by naming a fixture.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A tiny illegal submission: an optional network import and train-then-score TTT (PG-TTT-001, C3).
ILLEGAL = textwrap.dedent('''\
    import os
    import requests

    def ttt_adapt(model, opt, val_tokens):
        for epoch in range(3):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward()
            opt.step()

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    if int(os.environ.get("TTT_ENABLED", "1")):
        ttt_adapt(model, opt, val_tokens)
    print(eval_val(model, val_tokens))
''')
ILLEGAL_TTT_LINE = 8  # opt.step()
ILLEGAL_NET_LINE = 2  # import requests

# The same program with nothing illegal in it.
CLEAN = textwrap.dedent('''\
    import os

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    print(eval_val(model, val_tokens))
''')


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    @property
    def last_err_line(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """Point the default cache at a private folder so tests never write into the working directory."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", str(d))
    return d


@pytest.fixture
def cli(capsys, cache_env):
    """Run `scorefirst ARGS` in-process; returns exit code, stdout and stderr."""
    from harness.cli import main

    def run(*args: str) -> CliRun:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliRun(code, cap.out, cap.err)

    return run


@pytest.fixture
def cli_proc(tmp_path, cache_env):
    """Run `python -m harness ARGS` as a real process (for crash/traceback/import checks)."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> CliRun:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or tmp_path, env=env, timeout=timeout)
        return CliRun(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write(tmp_path):
    """write("sub/x.py", text) -> Path, creating folders."""

    def _write(rel: str, text: str | bytes) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write


@dataclass(frozen=True)
class Samples:
    illegal: str = ILLEGAL
    clean: str = CLEAN
    ttt_line: int = ILLEGAL_TTT_LINE
    net_line: int = ILLEGAL_NET_LINE


@pytest.fixture
def samples() -> Samples:
    """The sample programs (tests run with --import-mode=importlib, so they get these through a fixture)."""
    return Samples()


@pytest.fixture
def illegal_file(write) -> Path:
    return write("sub/train_gpt.py", ILLEGAL)


@pytest.fixture
def clean_file(write) -> Path:
    return write("clean/train_gpt.py", CLEAN)
