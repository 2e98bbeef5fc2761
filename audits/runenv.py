"""The run environment a submission is judged under: `--env`, plus run commands in its README and shell scripts.

Submissions read their configuration from environment variables whose defaults often switch TTT off; the
README's run command switches it on (`TTT_ENABLED=1 torchrun ... train_gpt.py`). Code is judged under
that configuration, so a path that cannot run is reported as inactive rather than as a violation (#1458).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from audits.results import EnvSetting

_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_RUN_HINT = re.compile(r"\b(torchrun|python3?|accelerate|srun)\b.*\.py\b|\btrain_gpt\.py\b")


class EnvError(ValueError):
    pass


def parse_env_args(items: list[str]) -> list[EnvSetting]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise EnvError(f"--env expects KEY=VALUE, got {item!r}")
        out.append(EnvSetting(key, value, "--env"))
    return out


def _assignments_in_command(line: str) -> list[tuple[str, str]]:
    """Leading `K=V` words of a shell command line, and `export K=V`."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split()
    out = []
    if words[:1] == ["export"]:
        words = words[1:]
        for w in words:
            if _ASSIGN.match(w):
                k, _, v = w.partition("=")
                out.append((k, v))
        return out
    for w in words:
        if w in ("env", "sudo", "nohup", "time"):
            continue
        if _ASSIGN.match(w):
            k, _, v = w.partition("=")
            out.append((k, v))
        else:
            break
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; keep the first physical line number."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf:
            start = i
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def run_files(folder: Path) -> list[tuple[Path, str]]:
    """The folder's README*.md and *.sh files with their text (capped; unreadable ones left out), where run
    commands are stated. Raises OSError when the folder itself cannot be listed."""
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.is_symlink() or not (p.suffix == ".sh" or p.name.lower().startswith("readme")):
            continue
        try:
            out.append((p, p.read_text(encoding="utf-8", errors="replace")[:2_000_000]))
        except OSError:
            continue
    return out


def run_commands_env(folder: Path) -> list[EnvSetting]:
    """Environment settings stated by run commands in README*.md and *.sh files of a submission folder."""
    out: list[EnvSetting] = []
    for p, text in run_files(folder):
        is_shell = p.suffix == ".sh"
        for lineno, line in _logical_lines(text):
            line = line.lstrip("$ ").strip("`")
            if not line:
                continue
            if is_shell and line.startswith("export "):
                pairs = _assignments_in_command(line)
            elif _RUN_HINT.search(line) and _ASSIGN.match(line):
                pairs = _assignments_in_command(line)
            else:
                continue
            out.extend(EnvSetting(k, v, f"{p.name}:{lineno}") for k, v in pairs)
    return out


_SCRIPT_WORD = re.compile(r"(?:^|[\s/=])([A-Za-z0-9_][A-Za-z0-9_.-]*\.py)\b")
_LAUNCHER = re.compile(r"\b(torchrun|accelerate\s+launch|srun|mpirun|deepspeed)\b|torch\.distributed\.(run|launch)")


def launched_scripts(folder: Path) -> list[str]:
    """File names of the Python scripts that the folder's README*.md and *.sh files launch as the scored run:
    under a distributed launcher (`torchrun`, `accelerate launch`, ...). A plain `python3 prepare_data.py` is a
    preparation step, not the run that is scored."""
    out: dict[str, None] = {}
    try:
        found = run_files(folder)
    except OSError:
        return []
    for _p, text in found:
        for _lineno, line in _logical_lines(text):
            if _LAUNCHER.search(line):
                for m in _SCRIPT_WORD.finditer(line):
                    out[m.group(1).rsplit("/", 1)[-1]] = None
    return list(out)


def effective_env(settings: list[EnvSetting]) -> dict[str, set[str]]:
    """Every value each key is stated with; several different values mean either may run."""
    env: dict[str, set[str]] = {}
    explicit = {s.key for s in settings if s.source == "--env"}
    for s in settings:
        if s.key in explicit and s.source != "--env":
            continue  # --env states the run; it overrides what the README says
        env.setdefault(s.key, set()).add(s.value)
    return env
