"""What every ledger check shares: the facts of one pass over the ledger, the per-tile view a check accumulates
from, and the notes that name events in a check's message.

A check is a :class:`LedgerCheck` subclass in its own module of this package. The ledger is read once, tile by tile
in position order (62M positions in seconds): for each tile, every check's :meth:`LedgerCheck.accumulate` sees the
same :class:`TileView`; then, in ``order``, :meth:`LedgerCheck.verdict` turns what it gathered and the shared
:class:`Facts` into its :class:`Check` (or none, for a check that only speaks when it has something to say). The
check's ``id`` is its entry in the catalogue (``audits/specs/dynamic.py``: the doc and the ruling it cites)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from audits.dynamic_result import Check
from harness.ledger import FLAG_EXPORT, NONE, SCORE, KindRanges, Ledger, first_seqs

LN2 = math.log(2)


@dataclass
class Tolerance:
    """How far the reported score may sit from the reconstruction. ``decimals`` (how many digits the evaluation
    printed) adds half a unit of the last printed digit to each side."""

    loss_abs: float = 1e-5       # nats per token
    bytes_rel: float = 1e-6      # implied byte count vs the canonical table
    decimals: int | None = None

    def loss(self) -> float:
        return self.loss_abs + (0.5 * 10.0 ** -self.decimals if self.decimals is not None else 0.0)

    def rel_printed(self, value: float) -> float:
        if self.decimals is None or not value:
            return 0.0
        return 0.5 * 10.0 ** -self.decimals / abs(value)

    def implied_bytes(self, loss: float, bpb: float, tokens: int, nbytes: int) -> tuple[float, float, bool]:
        """(the bytes a reported (loss, bpb) pair implies for ``tokens`` predictions, their relative difference
        from ``nbytes``, whether that is within the tolerance)."""
        implied = loss * tokens / (LN2 * bpb)
        rel = implied / nbytes - 1 if nbytes else float("inf")
        return implied, rel, abs(rel) <= self.bytes_rel + self.rel_printed(loss) + self.rel_printed(bpb)


class First:
    """The smallest position with a property, over tiles visited in position order, and how many have it."""

    def __init__(self):
        self.n = 0
        self.pos: int | None = None

    def add(self, mask: np.ndarray, lo: int) -> np.ndarray:
        idx = np.flatnonzero(mask)
        if idx.size:
            self.n += int(idx.size)
            if self.pos is None:
                self.pos = lo + int(idx[0])
        return idx


@dataclass
class TileView:
    """One tile of positions [lo, hi) as the checks see it: the ledger's per-position seqs, with updates that a
    restore reverted counted only for what was scored (or looked at) before the restore."""

    lo: int
    hi: int
    inside: np.ndarray          # inside the split's target range
    scored: np.ndarray          # scored at least once
    count: np.ndarray           # how many scores
    first_score: np.ndarray     # seq of the first score (NONE if never)
    first_update: np.ndarray    # seq of the first update that counts against the first score
    any_update: np.ndarray      # seq of the first update that read the position, reverted or not
    restored: np.ndarray        # read before the first score only by updates a restore reverted before it


@dataclass
class Facts:
    """The run as every check's verdict reads it: the inputs of :func:`harness.checks.check_ledger`, the totals of
    the shared pass, and what follows from them (the reconstruction, the reported pair, the gap)."""

    ledger: Ledger
    bytes_at: Any
    reported: dict
    tol: Tolerance
    traced: bool
    first_pos: int
    last_pos: int
    scores: KindRanges
    updates: KindRanges
    reverted: dict
    scope: str
    tile: int
    repeats: tuple[Any, Any] | None = None
    unscored: First = field(default_factory=First)        # targets never scored
    outside: First = field(default_factory=First)         # scored positions outside the split
    relook: First = field(default_factory=First)          # traced: predicted again after an update read them
    relook_first: tuple[int, int, int] | None = None
    loss_sum: float = 0.0
    last_sum: float = 0.0
    tokens: int = 0
    nbytes: int = 0

    @property
    def expected(self) -> int:
        return self.last_pos - self.first_pos + 1

    @property
    def rep_loss(self) -> float | None:
        return finite(self.reported.get("val_loss"))

    @property
    def rep_bpb(self) -> float | None:
        return finite(self.reported.get("val_bpb"))

    @property
    def rec_bpb(self) -> float | None:
        return self.loss_sum / (self.nbytes * LN2) if self.nbytes else None

    @property
    def has_repeats(self) -> bool:
        return self.repeats is not None and len(self.repeats[0]) > 0 and self.tokens > 0

    @cached_property
    def counted(self) -> tuple[float, int, int]:
        """(loss sum, tokens, bytes) as the reported mean counts them: the repeats a re-scored tail adds. Read
        after the pass (the totals are final then); several verdicts ask, it is summed once."""
        if not self.has_repeats:
            return self.loss_sum, self.tokens, self.nbytes
        rp, rv = np.asarray(self.repeats[0], dtype=np.int64), np.asarray(self.repeats[1], dtype=np.float64)
        nbytes = self.nbytes + int(np.asarray(self.bytes_at)[rp].sum(dtype=np.int64)) \
            if self.bytes_at is not None else self.nbytes
        return self.loss_sum + float(rv.sum()), self.tokens + rp.size, nbytes

    @property
    def rec_loss(self) -> float | None:
        """The reconstructed loss the reported one is compared with (counting the repeats)."""
        loss, tokens, _ = self.counted
        return loss / tokens if tokens else None

    @property
    def gap(self) -> float | None:
        """Reported minus reconstructed loss; None when either is missing."""
        if self.rep_loss is None or self.rec_loss is None:
            return None
        return self.rep_loss - self.rec_loss

    @property
    def last_look_loss(self) -> float | None:
        return self.last_sum / self.tokens if self.traced and self.tokens else None

    @property
    def exported(self) -> bool:
        """Every scored position's full distribution left torch (numpy): a mixture normalized there cannot be
        seen by the trace."""
        ev = self.ledger.events
        n = int(ev["npos"][(ev["kind"] == SCORE) & ((ev["flags"] & FLAG_EXPORT) != 0)].sum())
        return n >= self.tokens > 0

    @property
    def tail(self) -> str:
        """The hint when only a tail of the split went unscored (whole windows of the script's length)."""
        u = self.unscored
        if self.tokens and u.n and self.outside.n == 0 and u.n == self.last_pos - u.pos + 1:
            return (f"; only the last {u.n:,} targets were never scored: a script that scores whole windows of "
                    f"its sequence length drops a shorter tail, so audit with --val-tokens a multiple of it (N "
                    f"targets = N+1 tokens)")
        return ""


class LedgerCheck:
    """One check of the ledger. ``id`` names its catalogue entry; ``order`` places its verdict among the others."""

    id: str = ""
    order: int = 0

    def accumulate(self, view: TileView) -> None:
        """Gather this check's own facts from one tile (most checks need only the shared totals)."""

    def verdict(self, facts: Facts) -> Check | None:
        raise NotImplementedError


def finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def seqs_covering(kr: KindRanges, p: int) -> list[int]:
    m = (kr.start <= p) & (kr.stop > p)
    return [int(s) for s in np.unique(kr.seq[m])]


def first_seq(kr: KindRanges, p: int) -> int | None:
    s = seqs_covering(kr, p)
    return s[0] if s else None


def seq_list(seqs: list[int], k: int = 6) -> str:
    return ", ".join(map(str, seqs[:k])) + (f", ... ({len(seqs)} in all)" if len(seqs) > k else "")


def touched_note(ledger: Ledger, seq: int) -> str:
    """" (touching AdamW.step, lora.A, +3 more)": what the event at `seq` changed."""
    try:
        t = ledger.event_touched(ledger.index_of_seq(seq))
    except KeyError:
        return ""
    if not t:
        return ""
    names = ", ".join(t[:3]) + (f", +{len(t) - 3} more" if len(t) > 3 else "")
    return f" (touching {names})"


def restore_note(ledger: Ledger, seq: int) -> str:
    m = next((m for m in ledger.metas if m.get("seq") == seq), None)
    if not m:
        return ""
    names = ", ".join(m.get("names", [])[:3])
    return f" (state back to version {m.get('to_version')}{': ' + names if names else ''})"


def meta_ranges(ledger: Ledger, event: str, key: str) -> KindRanges:
    """The positions the tracer's META events of one kind name under ``key`` — "ranges" ((start, stop) pairs) or
    "positions" (single positions) — as ranges at each event's seq."""
    start, stop, seq = [], [], []
    for m in ledger.metas:
        if m.get("event") == event and "seq" in m:
            items = m.get(key, ())
            pairs = [(int(a), int(b)) for a, b in items] if key == "ranges" else [(int(q), int(q) + 1) for q in items]
            for a, b in pairs:
                start.append(a)
                stop.append(b)
                seq.append(int(m["seq"]))
    arr = [np.asarray(x, dtype=np.int64) for x in (start, stop, seq)]
    return KindRanges(arr[0], arr[1], arr[2], np.zeros_like(arr[2]), None)


def read_before_scored(f: Facts, kr: KindRanges, unscored: bool) -> tuple[int, tuple[int, int, int] | None]:
    """How many positions ``kr`` reads before their first score, and the first of them as (position, first score
    seq or NONE, first read seq); ``unscored``: positions never scored count too."""
    n, first = 0, None
    if not len(kr):
        return n, first
    lo, hi = int(kr.start.min()), int(kr.stop.max())
    for a in range(lo, hi, f.tile):
        b = min(a + f.tile, hi)
        fr, fs = first_seqs(kr, a, b), first_seqs(f.scores, a, b)
        bad = np.flatnonzero((fr != NONE) & (fr < fs) & (True if unscored else fs != NONE))
        n += int(bad.size)
        if bad.size and first is None:
            first = (a + int(bad[0]), int(fs[bad[0]]), int(fr[bad[0]]))
    return n, first
