"""A tiny progress bar on stderr: redrawn in place on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "it", stream=None, enabled: bool = True):
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.n, self.start, self._last_draw, self._last_quarter = 0, time.perf_counter(), 0.0, -1
        self._printed_n = -1
        self.postfix = ""
        self._draw(force=True)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        self._draw()

    def close(self) -> None:
        self._draw(force=True, final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        frac = self.n / self.total if self.total else 1.0
        bar = "#" * int(20 * min(frac, 1.0))
        eta = (self.total - self.n) / rate if rate > 0 and self.total else 0.0
        tail = f" {self.postfix}" if self.postfix else ""
        return (f"{self.desc} [{bar:<20}] {self.n}/{self.total} {self.unit} "
                f"{elapsed:.0f}s<{eta:.0f}s {rate:.1f}{self.unit}/s{tail}")

    def _draw(self, force: bool = False, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if force or now - self._last_draw > 0.2:
                self.stream.write("\r" + self._line() + ("\n" if final else ""))
                self.stream.flush()
                self._last_draw = now
            return
        quarter = int(4 * self.n / self.total) if self.total else 4
        if quarter > self._last_quarter or (final and self.n != self._printed_n):
            self._last_quarter, self._printed_n = quarter, self.n
            self.stream.write(self._line() + "\n")
            self.stream.flush()
