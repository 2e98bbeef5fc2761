"""Progress of a sweep on stderr: a redrawn bar with rate and ETA on a terminal, one line per PR otherwise (logs)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def outcome(record: dict[str, Any]) -> str:
    """`FAIL PG-TTT-003`, `PASS`, `no records/ changes`, `error: ...` for one finished PR."""
    if record["status"] == "no-records":
        return "no records/ changes"
    if record["status"] == "error":
        return f"error: {record['error']}"
    verdict = record.get("verdict", "PASS")
    rules = record.get("rules") or []
    text = verdict + (f" {', '.join(rules)}" if rules else "")
    if record.get("incomplete"):
        text += " (incomplete)"
    return text


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, tty: bool | None = None, width: int = 28):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = 0
        self.reused = 0
        self.width = width
        self.start = time.monotonic()
        self._drawn = False

    def update(self, record: dict[str, Any], reused: bool) -> None:
        self.done += 1
        self.reused += reused
        if self.tty:
            self._bar()
        else:
            where = f"[{self.done}/{self.total}]"
            tag = " (journal)" if reused else ""
            self._write(f"{where} PR #{record['number']}: {outcome(record)}{tag}\n")

    def _bar(self) -> None:
        elapsed = time.monotonic() - self.start
        fresh = self.done - self.reused
        frac = self.done / self.total if self.total else 1.0
        filled = int(self.width * frac)
        rate = fresh / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = _clock(left / rate) if rate > 0 and left else ("0:00" if not left else "--:--")
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} PRs "
                f"{frac:6.1%}  {rate:.2f} PR/s  elapsed {_clock(elapsed)}  ETA {eta} ")
        self._write(line)
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
