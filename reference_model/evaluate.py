"""Evaluation without adaptation: non-overlapping sequences (spec 6.1) and the stride-s sliding window (6.2).

Sliding windows follow the [Q5] rule (quirk Q5 decision): a window starting at ws > 0 is kept iff ws + L - s < total
and scores its targets from local index L - s on, so every target is scored exactly once and, past the first
window, with at least L - s tokens of context. Consecutive windows score consecutive blocks, so a batch of them
scores one contiguous range of positions.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .errors import InputError
from .model import GPT, autocast
from .observe import Observer, Tracker
from .progress import Progress


def truncate(val: np.ndarray, seq_len: int) -> np.ndarray:
    """The official validation length: floor((N-1)/L)*L targets plus one token."""
    return val[: (val.size - 1) // seq_len * seq_len + 1]


def token_nll(model: GPT, x: torch.Tensor, y: torch.Tensor, lora=None) -> torch.Tensor:
    """Per-token fp32 cross-entropy of softcapped logits, shape of ``y``."""
    with autocast(x.device):
        logits = model.logits(x, lora) if lora is not None else getattr(model, "fast_logits", model.logits)(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)


class Windows:
    """Sliding windows over ``total`` targets: start ws, length wlen, first scored local index ``first``."""

    def __init__(self, total: int, seq_len: int, stride: int):
        if seq_len % stride:
            raise InputError(f"eval seq_len {seq_len} must be a multiple of the stride {stride}")
        starts = np.arange(0, total, stride)
        keep = (starts == 0) | (starts + seq_len - stride < total)
        self.ws = starts[keep]
        self.wlen = np.minimum(seq_len, total - self.ws)
        self.first = np.where(self.ws == 0, 0, seq_len - stride)
        self.seq_len = seq_len

    def __len__(self) -> int:
        return self.ws.size

    def scored_targets(self, i: int) -> tuple[int, int]:
        return int(self.ws[i] + self.first[i]), int(self.ws[i] + self.wlen[i])

    def batch(self, val: torch.Tensor, lo: int, hi: int, rows: int):
        """Inputs, targets and scored mask for windows [lo, hi) padded with empty rows to ``rows`` (one static
        shape for compiled forwards), plus the scored position range (start, stop)."""
        dev = val.device
        pad = rows - (hi - lo)
        ws = torch.as_tensor(np.pad(self.ws[lo:hi], (0, pad)), device=dev)
        wlen = torch.as_tensor(np.pad(self.wlen[lo:hi], (0, pad)), device=dev)
        first = torch.as_tensor(np.pad(self.first[lo:hi], (0, pad)), device=dev)
        t = torch.arange(self.seq_len, device=dev)
        inside = t[None, :] < wlen[:, None]
        idx = (ws[:, None] + t[None, :]).clamp_max(val.numel() - 2)
        x = torch.where(inside, val[idx], 0)
        y = torch.where(inside, val[idx + 1], 0)
        mask = inside & (t[None, :] >= first[:, None])
        positions = (self.scored_targets(lo)[0] + 1, self.scored_targets(hi - 1)[1] + 1)
        return x, y, mask, positions


@torch.no_grad()
def score_windows(model: GPT, val: torch.Tensor, windows: Windows, lo: int, hi: int, batch_seqs: int,
                  tracker: Tracker, bar: Progress | None = None) -> None:
    model.eval()
    for b in range(lo, hi, batch_seqs):
        e = min(b + batch_seqs, hi)
        x, y, mask, positions = windows.batch(val, b, e, batch_seqs)
        tracker.score(positions, token_nll(model, x, y)[mask])
        if bar is not None:
            bar.update(e - b)


def device_val(model: GPT, val: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(val.astype(np.int64), device=next(model.parameters()).device)


def finish(tracker: Tracker, t0: float, mode: str) -> dict:
    res = tracker.result()
    res["eval_ms"] = 1000 * (time.perf_counter() - t0)
    if tracker.nll is not None:
        res["nll"] = tracker.nll.cpu()
    tracker.meta(event="end", mode=mode, **{k: v for k, v in res.items() if k != "nll"})
    return res


def begin(observer: Observer | None, bytes_at: torch.Tensor, keep_nll: bool, mode: str, legal: bool,
          n_tokens: int, **kw) -> tuple[Tracker, float]:
    tracker = Tracker(observer, bytes_at, keep_nll)
    kw.setdefault("state_scope", "global")
    tracker.meta(event="begin", mode=mode, legal=legal, n_tokens=n_tokens, first_position=1,
                 last_position=n_tokens - 1, **kw)
    return tracker, time.perf_counter()


def eval_standard(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                  keep_nll: bool = False, progress: bool = False) -> dict:
    """Non-overlapping sequences of eval seq_len; every target of the truncated split scored once (the last
    batch is zero-padded to a full one, so compiled forwards see one shape)."""
    L = cfg.eval.seq_len
    val = device_val(model, truncate(val_all, L))
    tracker, t0 = begin(observer, bytes_at, keep_nll, "standard", True, val.numel())
    n_seq = (val.numel() - 1) // L
    model.eval()
    with torch.no_grad(), Progress(n_seq, "eval", "seqs", enabled=progress) as bar:
        for s in range(0, n_seq, cfg.eval.batch_seqs):
            e = min(s + cfg.eval.batch_seqs, n_seq)
            x = torch.zeros(cfg.eval.batch_seqs * L, dtype=val.dtype, device=val.device)
            y = torch.zeros_like(x)
            x[: (e - s) * L], y[: (e - s) * L] = val[s * L : e * L], val[s * L + 1 : e * L + 1]
            nll = token_nll(model, x.view(-1, L), y.view(-1, L)).flatten()[: (e - s) * L]
            tracker.score((s * L + 1, e * L + 1), nll)
            bar.update(e - s)
    return finish(tracker, t0, "standard")


def eval_sliding(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                 keep_nll: bool = False, progress: bool = False) -> dict:
    e = cfg.eval
    val = device_val(model, truncate(val_all, e.seq_len))
    windows = Windows(val.numel() - 1, e.seq_len, e.stride)
    tracker, t0 = begin(observer, bytes_at, keep_nll, "sliding", True, val.numel(), stride=e.stride)
    with Progress(len(windows), "sliding eval", "windows", enabled=progress) as bar:
        score_windows(model, val, windows, 0, len(windows), e.batch_seqs, tracker, bar)
    return finish(tracker, t0, "sliding")
