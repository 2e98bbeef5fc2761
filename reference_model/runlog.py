"""Log lines in the official train_gpt.py grammar, and a parser for them.

Every line is ``key:value`` tokens separated by spaces after an optional label (``step:3/200 train_loss:6.9 ...``,
``final_int6_sliding_window val_loss:... val_bpb:...``), so one regular expression reads them all back.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"(\w+):(\S+)")


def val_line(step: int, total: int, val_loss: float, val_bpb: float, train_ms: float, steps_done: int) -> str:
    return (f"step:{step}/{total} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} train_time:{train_ms:.0f}ms "
            f"step_avg:{train_ms / max(steps_done, 1):.2f}ms")


def train_line(step: int, total: int, train_loss: float, train_ms: float, steps_done: int) -> str:
    return (f"step:{step}/{total} train_loss:{train_loss:.4f} train_time:{train_ms:.0f}ms "
            f"step_avg:{train_ms / max(steps_done, 1):.2f}ms")


def eval_lines(label: str, res: dict, eval_ms: float | None = None, extra: str = "") -> list[str]:
    """The rounded line and the ``_exact`` line that official logs print for every final evaluation."""
    tail = f" eval_time:{eval_ms:.0f}ms" if eval_ms is not None else ""
    extra = f" {extra}" if extra else ""
    return [f"{label} val_loss:{res['val_loss']:.4f} val_bpb:{res['val_bpb']:.4f}{extra}{tail}",
            f"{label}_exact val_loss:{res['val_loss']:.8f} val_bpb:{res['val_bpb']:.8f}"]


def parse_line(line: str) -> dict:
    """``{'label': first bare word or None, key: value, ...}``; numeric values become floats (``ms`` stripped)."""
    out: dict = {"label": None}
    words = line.split()
    if words and ":" not in words[0]:
        out["label"] = words[0]
    for key, raw in _TOKEN.findall(line):
        value = raw.removesuffix("ms")
        try:
            out[key] = float(value) if "/" not in value else value
        except ValueError:
            out[key] = raw
    return out
