"""The token ledger: an append-only record of when every validation position was scored and when every parameter or
adapter update read it, ordered by one global sequence number.

Events
    SCORE   positions (ranges), one NLL per position, the state version that scored them
    UPDATE  positions that fed the gradient (inputs and targets), parameters or adapters touched, the state version
            after the update
    LOOK    (traced scripts) a computation of the predictions for some positions, with NLL; flag bit 0 = made with
            gradients enabled, bit 1 = its vocabulary-wide values left torch (kept on the SCORE derived from it),
            bit 2 = its ids' origin was lost and their window occurs in the training shards too (ambiguous).
            The tracer records every computation as a LOOK; the harness then derives which ones were the scores
            (``harness.dynamic``), keeping the rest as LOOKs
    META    a JSON object (run metadata, the evaluator's begin/end records, reported results)
    SYNC    (traced torchrun ranks) how many collective operations the rank had entered before the events that
            follow (in ``version``); every rank calls collectives in the same order, so merging ranks by this count
            respects what each rank could have known of the others

Storage: a folder of column files written append-only, so the full 62M-position split costs about 4 bytes a
scored position (the NLL) plus 16 bytes per contiguous range and 64 bytes per event::

    header.json     format, rank, validation length, creation time      (written once)
    events.bin      one 64-byte record per event (EVENT_DTYPE)
    ranges.bin      int64 (start, stop) pairs, half-open, in the order the event listed its positions
    nll.bin         float32, one per position of each SCORE/LOOK event, aligned with its ranges
    meta.jsonl      one JSON line per META event, with its seq
    touched.jsonl   the table of distinct "touched" lists, one JSON line each (UPDATE events index it)
    commit.json     how much of each file is valid; replaced atomically at every flush; "complete" at close

A writer buffers at most ``flush_positions`` NLL values (and flushes at least every ``flush_seconds``), so memory
is bounded; a run killed mid-way leaves every flushed event readable, and ``commit.json`` says it is incomplete.
Bytes past the last commit are ignored by readers.

Per-position tables (first-score seq, first-update seq, score count, first-score NLL) are computed tile by tile
(:func:`iter_tiles`), so checking the whole split never holds more than one tile of positions in memory.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

FORMAT = "scorefirst.ledger/1"
SCORE, UPDATE, LOOK, META, SYNC = 1, 2, 3, 4, 5
KIND_NAMES = {SCORE: "score", UPDATE: "update", LOOK: "look", META: "meta", SYNC: "sync"}
FLAG_GRAD = 1    # LOOK made with gradients enabled
FLAG_EXPORT = 2  # LOOK (or the SCORE derived from it) whose vocabulary-wide values left torch (numpy, tolist)
FLAG_AMBIGUOUS = 4  # LOOK of token ids whose origin was lost and whose window occurs in both splits
NONE = np.iinfo(np.int64).max  # "never" in per-position seq tables

EVENT_DTYPE = np.dtype([
    ("seq", "<i8"), ("kind", "u1"), ("flags", "u1"), ("rank", "<u2"), ("touched", "<i4"),
    ("version", "<i8"), ("time", "<f8"), ("rng_off", "<i8"), ("rng_n", "<i8"), ("nll_off", "<i8"),
    ("npos", "<i8"),
])
assert EVENT_DTYPE.itemsize == 64

_FILES = {"events": "events.bin", "ranges": "ranges.bin", "nll": "nll.bin", "meta": "meta.jsonl",
          "touched": "touched.jsonl"}


class LedgerError(Exception):
    """A folder that is not a readable ledger."""


# --- positions ---------------------------------------------------------------------------------------------------


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        x = x.numpy()
    return np.asarray(x)


class Ranges:
    """Positions already given as half-open (start, stop) pairs (an ``(n, 2)`` int64 array)."""

    def __init__(self, rng: Any):
        self.rng = np.asarray(rng, dtype=np.int64).reshape(-1, 2)


def to_ranges(positions: Any) -> np.ndarray:
    """Half-open (start, stop) int64 pairs in the given order: :class:`Ranges`, a ``(start, stop)`` tuple, or an
    array of positions run-length encoded (consecutive positions p, p+1, ... become one range)."""
    if isinstance(positions, Ranges):
        return positions.rng
    if isinstance(positions, tuple) and len(positions) == 2 and not hasattr(positions[0], "__len__"):
        a, b = int(positions[0]), int(positions[1])
        return np.array([[a, b]], dtype=np.int64) if b > a else np.zeros((0, 2), dtype=np.int64)
    p = _numpy(positions).astype(np.int64, copy=False).ravel()
    if p.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(p) != 1) + 1
    if not breaks.size:  # one run, the usual case (a window, a chunk): no concatenations
        return np.array([[p[0], p[-1] + 1]], dtype=np.int64)
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [p.size]])
    return np.stack([p[starts], p[stops - 1] + 1], axis=1)


def ranges_size(ranges: np.ndarray) -> int:
    if len(ranges) == 1:  # called per event: skip the array arithmetic for the usual single range
        return int(ranges[0, 1] - ranges[0, 0])
    return int((ranges[:, 1] - ranges[:, 0]).sum()) if len(ranges) else 0


# --- writing ------------------------------------------------------------------------------------------------------


class LedgerWriter:
    """Append events with global sequence numbers; ``seq`` is shared by every kind, so order is total.

    ``positions`` is the validation length N (positions 0..N-1; position 0 is never a target). ``seq_start`` lets a
    caller continue numbering (tests use it; ranks each start at 0 and are merged by :func:`merge`).
    """

    def __init__(self, path: str | os.PathLike, positions: int | None = None, meta: dict | None = None,
                 rank: int = 0, flush_positions: int = 1 << 20, flush_seconds: float = 5.0, seq_start: int = 0):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / "commit.json").exists() or (self.path / "header.json").exists():
            raise LedgerError(f"{self.path}: a ledger already exists here (ledgers are append-only; use a new folder)")
        self.rank = rank
        self.header = {"format": FORMAT, "rank": rank, "positions": positions, "created": time.time(),
                       "meta": meta or {}}
        (self.path / "header.json").write_text(json.dumps(self.header, indent=1) + "\n")
        self._fh = {k: open(self.path / name, "ab") for k, name in _FILES.items()}
        self.seq = seq_start
        self.flush_positions, self.flush_seconds = flush_positions, flush_seconds
        self._last_flush = time.monotonic()
        self._touched: dict[tuple, int] = {}
        self._ev: list[tuple] = []
        self._rng: list[np.ndarray] = []
        self._nll: list[np.ndarray] = []
        self._meta_lines: list[bytes] = []
        self._touched_lines: list[bytes] = []
        self._pending_pos = 0
        self._pending_rng = 0
        self.counts = {"events": 0, "ranges": 0, "nll": 0, "meta": 0, "touched": 0}
        self.bytes = {"meta": 0, "touched": 0}
        self.collectives = 0       # collective operations entered so far (see collective())
        self._synced = 0
        self.closed = False
        self._commit(complete=False)

    # events
    def score(self, positions: Any, nll: Any, version: int, flags: int = 0) -> int:
        return self._scored(SCORE, positions, nll, version, flags)

    def look(self, positions: Any, nll: Any, version: int, flags: int = 0) -> int:
        return self._scored(LOOK, positions, nll, version, flags)

    def _scored(self, kind: int, positions: Any, nll: Any, version: int, flags: int = 0) -> int:
        rng = to_ranges(positions)
        values = _numpy(nll).astype(np.float32, copy=False).ravel()
        n = ranges_size(rng)
        if values.size != n:
            raise ValueError(f"{values.size} NLL values for {n} positions")
        return self._append(kind, rng, values, version, -1, flags, n)

    def update(self, positions: Any, touched: Sequence[str], version_after: int) -> int:
        key = tuple(map(str, touched))
        tid = self._touched.get(key)
        if tid is None:
            tid = self._touched[key] = len(self._touched)
            self._touched_lines.append((json.dumps(list(key)) + "\n").encode())
        return self._append(UPDATE, to_ranges(positions), None, version_after, tid)

    def collective(self) -> None:
        """The rank entered a collective operation. Costs nothing until the next event, which is preceded by one
        SYNC event carrying the count (so a burst of all-reduces between two events is one SYNC)."""
        self.collectives += 1

    def meta(self, **payload) -> int:
        seq = self._append(META, np.zeros((0, 2), dtype=np.int64), None, -1, -1)
        line = json.dumps({"seq": seq, **payload}, default=_json_default, allow_nan=True)
        self._meta_lines.append((line + "\n").encode())
        self.flush()  # metadata is rare and marks phases: make it durable at once
        return seq

    def _append(self, kind: int, rng: np.ndarray, nll: np.ndarray | None, version: int, touched: int,
                flags: int = 0, npos: int | None = None) -> int:
        if self.closed:
            raise LedgerError("ledger is closed")
        if kind != SYNC and self._synced != self.collectives:
            self._synced = self.collectives
            self._append(SYNC, np.zeros((0, 2), dtype=np.int64), None, self.collectives, -1)
        seq = self.seq
        self.seq += 1
        rng_off = self.counts["ranges"] + self._pending_rng
        nll_off = self.counts["nll"] + self._pending_pos
        if npos is None:
            npos = ranges_size(rng)
        self._ev.append((seq, kind, flags, self.rank, touched, version, time.time(), rng_off, len(rng),
                         nll_off if nll is not None else -1, npos))
        if len(rng):
            self._rng.append(rng)
            self._pending_rng += len(rng)
        if nll is not None and nll.size:
            self._nll.append(nll)
            self._pending_pos += nll.size
        if self._pending_pos >= self.flush_positions or len(self._ev) >= 65536 or \
                time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return seq

    # durability
    def flush(self) -> None:
        if self.closed:
            return
        if self._ev:
            ev = np.array(self._ev, dtype=EVENT_DTYPE)
            self._fh["events"].write(ev.tobytes())
            self.counts["events"] += len(ev)
        if self._rng:
            r = np.concatenate(self._rng).astype("<i8", copy=False)
            self._fh["ranges"].write(r.tobytes())
            self.counts["ranges"] += len(r)
        if self._nll:
            v = np.concatenate(self._nll).astype("<f4", copy=False)
            self._fh["nll"].write(v.tobytes())
            self.counts["nll"] += v.size
        for key, lines in (("meta", self._meta_lines), ("touched", self._touched_lines)):
            for line in lines:
                self._fh[key].write(line)
                self.bytes[key] += len(line)
                self.counts[key] += 1
        self._ev, self._rng, self._nll, self._meta_lines, self._touched_lines = [], [], [], [], []
        self._pending_pos = self._pending_rng = 0
        for fh in self._fh.values():
            fh.flush()
        self._commit(complete=False)
        self._last_flush = time.monotonic()

    def _commit(self, complete: bool) -> None:
        commit = {"format": FORMAT, "complete": complete, "next_seq": self.seq, **self.counts,
                  "meta_bytes": self.bytes["meta"], "touched_bytes": self.bytes["touched"]}
        tmp = self.path / "commit.json.tmp"
        tmp.write_text(json.dumps(commit) + "\n")
        os.replace(tmp, self.path / "commit.json")

    def close(self, complete: bool = True) -> None:
        if self.closed:
            return
        self.flush()
        for fh in self._fh.values():
            fh.close()
        self._commit(complete=complete)
        self.closed = True

    def __enter__(self) -> "LedgerWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


class LedgerObserver:
    """The reference model's :class:`reference_model.observe.Observer`, writing every event to a ledger.

    GPU-friendly: positions and NLL tensors on a GPU are copied to pinned host memory with non-blocking copies and
    handed to the writer, in seq order, only once ``sync_every`` events are pending (checked at scoring calls, right
    after the evaluator has produced the scores, never after an optimizer step whose kernels are still running) and
    at meta events, after one wait on the stream. Observing a CUDA evaluation thus costs one wait per
    ``sync_every`` events and never stalls the queue behind a backward pass.
    """

    def __init__(self, writer: LedgerWriter, sync_every: int = 64):
        self.writer = writer
        self.sync_every = sync_every
        self._pending: list[tuple] = []
        self._copies_in_flight = False
        self.reported: dict | None = None

    def on_score(self, positions, nll, state_version: int) -> None:
        self._pending.append(("score", self._host(positions), self._host(nll), state_version))
        if len(self._pending) >= self.sync_every:
            self.drain()

    def on_update(self, positions, touched, state_version_after: int) -> None:
        self._pending.append(("update", self._host(positions), list(touched), state_version_after))

    def on_meta(self, **kw) -> None:
        self.drain()
        if kw.get("event") == "end":
            self.reported = {k: kw.get(k) for k in ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes")}
        self.writer.meta(**kw)

    def _host(self, x: Any) -> Any:
        """A host copy of a tensor (non-blocking from a GPU, into pinned memory); tuples and arrays pass through."""
        if not hasattr(x, "detach"):
            return x
        x = x.detach()
        if x.device.type == "cpu":
            return x.clone()
        import torch

        out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        out.copy_(x, non_blocking=True)
        self._copies_in_flight = True
        return out

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        if self._copies_in_flight:
            import torch

            torch.cuda.current_stream().synchronize()
            self._copies_in_flight = False
        for kind, pos, payload, version in pending:
            if kind == "score":
                self.writer.score(pos, payload, version)
            else:
                self.writer.update(pos, payload, version)

    def close(self, complete: bool = True) -> None:
        self.drain()
        self.writer.close(complete)


# --- reading ------------------------------------------------------------------------------------------------------


def _memmap(path: Path, dtype, count: int, shape_tail: tuple = ()) -> np.ndarray:
    if count == 0:
        return np.zeros((0,) + shape_tail, dtype=dtype)
    need = count * int(np.prod(shape_tail or (1,))) * np.dtype(dtype).itemsize
    if path.stat().st_size < need:
        raise LedgerError(f"{path}: shorter than its commit record ({path.stat().st_size} < {need} bytes)")
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,) + shape_tail)


def _json_lines(path: Path, nbytes: int) -> list[dict]:
    with open(path, "rb") as f:
        data = f.read(nbytes)
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


class Ledger:
    """A ledger opened for reading (memory-mapped; nothing past the last commit is read)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.header = json.loads((self.path / "header.json").read_text())
            commit = json.loads((self.path / "commit.json").read_text())
        except FileNotFoundError as e:
            raise LedgerError(f"{self.path}: not a ledger (missing {Path(e.filename).name})") from None
        except json.JSONDecodeError as e:
            raise LedgerError(f"{self.path}: corrupt ledger metadata ({e})") from None
        if self.header.get("format") != FORMAT:
            raise LedgerError(f"{self.path}: unknown ledger format {self.header.get('format')!r}")
        self.commit = commit
        self.complete = bool(commit.get("complete"))
        self.events = _memmap(self.path / _FILES["events"], EVENT_DTYPE, commit["events"])
        self.ranges = _memmap(self.path / _FILES["ranges"], "<i8", commit["ranges"], (2,))
        self.nll = _memmap(self.path / _FILES["nll"], "<f4", commit["nll"])
        self.metas = _json_lines(self.path / _FILES["meta"], commit["meta_bytes"])
        self.touched = [tuple(t) for t in _json_lines(self.path / _FILES["touched"], commit["touched_bytes"])]

    @property
    def positions(self) -> int:
        """The validation length N: from the header, else the evaluator's begin record, else the largest position."""
        n = self.header.get("positions")
        if n is None:
            begin = self.begin
            n = begin.get("n_tokens") if begin else None
        if n is None:
            n = int(self.ranges[:, 1].max()) if len(self.ranges) else 0
        return int(n)

    @property
    def begin(self) -> dict | None:
        return next((m for m in self.metas if m.get("event") == "begin"), None)

    @property
    def end(self) -> dict | None:
        return next((m for m in reversed(self.metas) if m.get("event") == "end"), None)

    @property
    def max_seq(self) -> int:
        return int(self.events["seq"][-1]) if len(self.events) else 0

    def count(self, kind: int) -> int:
        return int((self.events["kind"] == kind).sum())

    def summary(self) -> dict:
        return {"positions": self.positions, "events": len(self.events), "score_events": self.count(SCORE),
                "update_events": self.count(UPDATE), "complete": self.complete, "path": str(self.path)}

    def event_ranges(self, i: int) -> np.ndarray:
        e = self.events[i]
        return np.asarray(self.ranges[e["rng_off"] : e["rng_off"] + e["rng_n"]])

    def event_touched(self, i: int) -> tuple:
        t = int(self.events[i]["touched"])
        return self.touched[t] if 0 <= t < len(self.touched) else ()

    def index_of_seq(self, seq: int) -> int:
        i = int(np.searchsorted(self.events["seq"], seq))
        if i >= len(self.events) or self.events[i]["seq"] != seq:
            raise KeyError(seq)
        return i

    def kind_ranges(self, kind: int) -> "KindRanges":
        return KindRanges.of(self, kind)


@dataclass
class KindRanges:
    """Every range of one event kind, flattened: start, stop, the event's seq and version, and (for scored kinds)
    the index of the range's first NLL value. Events are in seq order, so these arrays are too."""

    start: np.ndarray
    stop: np.ndarray
    seq: np.ndarray
    version: np.ndarray
    nll_at: np.ndarray | None
    touched: np.ndarray | None = None  # index into Ledger.touched (UPDATE ranges)

    @classmethod
    def of(cls, ledger: Ledger, kind: int) -> "KindRanges":
        ev = ledger.events
        sel = np.flatnonzero((ev["kind"] == kind) & (ev["rng_n"] > 0))
        n = ev["rng_n"][sel].astype(np.int64)
        total = int(n.sum())
        if total == 0:
            z = np.zeros(0, dtype=np.int64)
            return cls(z, z, z, z, z if kind in (SCORE, LOOK) else None, z if kind == UPDATE else None)
        first = np.repeat(ev["rng_off"][sel], n)
        within = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        idx = first + within
        start = np.asarray(ledger.ranges[idx, 0])
        stop = np.asarray(ledger.ranges[idx, 1])
        seq = np.repeat(ev["seq"][sel], n)
        version = np.repeat(ev["version"][sel], n)
        nll_at = None
        if kind in (SCORE, LOOK):
            length = stop - start
            # NLL values of an event follow its ranges in order: offset of range j = event offset + lengths before j
            before = np.cumsum(length) - length
            ev_first = np.repeat(np.cumsum(n) - n, n)
            nll_at = np.repeat(ev["nll_off"][sel], n) + before - before[ev_first]
        touched = np.repeat(ev["touched"][sel], n).astype(np.int64) if kind == UPDATE else None
        return cls(start, stop, seq, version, nll_at, touched)

    def __len__(self) -> int:
        return self.start.size

    def covering(self, lo: int, hi: int) -> np.ndarray:
        return np.flatnonzero((self.stop > lo) & (self.start < hi))

    def where(self, mask: np.ndarray) -> "KindRanges":
        return KindRanges(self.start[mask], self.stop[mask], self.seq[mask], self.version[mask],
                          None if self.nll_at is None else self.nll_at[mask],
                          None if self.touched is None else self.touched[mask])

    def in_seq(self, lo: int | None = None, hi: int | None = None) -> "KindRanges":
        """The ranges of events with lo <= seq < hi."""
        mask = np.ones(self.seq.size, dtype=bool)
        if lo is not None:
            mask &= self.seq >= lo
        if hi is not None:
            mask &= self.seq < hi
        return self.where(mask)


@dataclass
class Tile:
    """Per-position tables for positions [lo, hi)."""

    lo: int
    hi: int
    count: np.ndarray             # int32: SCORE ranges that covered the position
    first_score: np.ndarray       # int64 seq of the first SCORE (NONE if never)
    first_nll: np.ndarray         # float32 NLL of that first SCORE (NaN if never)
    first_update: np.ndarray      # int64 seq of the first UPDATE that read it (NONE if never)
    last_look: np.ndarray | None = None      # int64 seq of the last LOOK (-1 if none), when looks were given
    last_look_nll: np.ndarray | None = None  # float32 NLL of that LOOK


def iter_tiles(ledger: Ledger, tile: int = 1 << 20, lo: int = 0, hi: int | None = None,
               scores: KindRanges | None = None, updates: KindRanges | None = None,
               looks: KindRanges | None = None) -> Iterator[Tile]:
    """Per-position tables, ``tile`` positions at a time (memory about 24 bytes x tile, 36 with looks).

    Ranges are painted in seq order: first-score and first-update tables by writing the events in reverse (the
    earliest write lands last), the last look by writing them forward. Counts come from a difference array.
    """
    hi = ledger.positions if hi is None else hi
    scores = scores if scores is not None else ledger.kind_ranges(SCORE)
    updates = updates if updates is not None else ledger.kind_ranges(UPDATE)
    nll = ledger.nll
    for a in range(lo, max(hi, lo), tile):
        b = min(a + tile, hi)
        n = b - a
        count = np.zeros(n + 1, dtype=np.int32)
        first = np.full(n, NONE, dtype=np.int64)
        first_nll = np.full(n, np.nan, dtype=np.float32)
        sel = scores.covering(a, b)
        if sel.size:
            s = np.maximum(scores.start[sel], a) - a
            e = np.minimum(scores.stop[sel], b) - a
            np.add.at(count, s, 1)
            np.add.at(count, e, -1)
            _paint(first, first_nll, nll, scores, sel, s, e, a, reverse=True)
        upd = first_seqs(updates, a, b)
        last = last_nll = None
        if looks is not None:
            last = np.full(n, -1, dtype=np.int64)
            last_nll = np.full(n, np.nan, dtype=np.float32)
            sel = looks.covering(a, b)
            if sel.size:
                s = np.maximum(looks.start[sel], a) - a
                e = np.minimum(looks.stop[sel], b) - a
                _paint(last, last_nll, nll, looks, sel, s, e, a, reverse=False)
        yield Tile(a, b, np.cumsum(count[:-1], dtype=np.int32), first, first_nll, upd, last, last_nll)


def first_seqs(kr: KindRanges, a: int, b: int) -> np.ndarray:
    """Per position of [a, b): the seq of the first range of ``kr`` covering it (NONE if none)."""
    out = np.full(b - a, NONE, dtype=np.int64)
    sel = kr.covering(a, b)
    if sel.size:
        s = np.maximum(kr.start[sel], a) - a
        e = np.minimum(kr.stop[sel], b) - a
        _paint(out, None, None, kr, sel, s, e, a, reverse=True)
    return out


def _paint(seq_out: np.ndarray, nll_out: np.ndarray | None, nll: np.ndarray | None, kr: KindRanges,
           sel: np.ndarray, s: np.ndarray, e: np.ndarray, a: int, reverse: bool) -> None:
    order = range(sel.size - 1, -1, -1) if reverse else range(sel.size)
    seqs = kr.seq[sel]
    if nll_out is None:
        for j in order:
            seq_out[s[j] : e[j]] = seqs[j]
        return
    offs = kr.nll_at[sel] + (s + a - kr.start[sel])
    for j in order:
        s_, e_ = s[j], e[j]
        seq_out[s_:e_] = seqs[j]
        nll_out[s_:e_] = nll[offs[j] : offs[j] + (e_ - s_)]


# --- merging ranks ------------------------------------------------------------------------------------------------


def merge(paths: Sequence[str | os.PathLike], out: str | os.PathLike, mode: str = "auto") -> dict:
    """Merge per-rank ledgers (torchrun) into one ledger in a global order; returns what was done.

    The order: by the number of collective operations each event's rank had entered before it (SYNC events; every
    rank enters them in the same order, so an event after the c-th collective of one rank comes after everything any
    rank did before entering it), then as the mode says, then by rank, then in the rank's own order. Events of
    different ranks between two SYNC events of the merged ledger were concurrent (see ``harness.dynamic``).

    ``collective``: ranks step their optimizers together with all-reduced gradients (DDP-style TTT), so the k-th
    UPDATE of every rank is one global update that read the union of their positions; each rank's events between
    its updates k and k+1 were made by global state k and are placed between merged updates k and k+1.
    ``independent``: ranks adapt private state (per-document LoRA on each rank); no update is merged, so a rank's
    scores are only ever compared with the positions its own updates read. ``auto`` picks collective when every
    rank made the same number of updates.
    """
    ledgers = [Ledger(p) for p in paths]
    if not ledgers:
        raise LedgerError("nothing to merge")
    n_upd = [lg.count(UPDATE) for lg in ledgers]
    if mode == "auto":
        mode = "collective" if len(set(n_upd)) == 1 else "independent"
    if mode not in ("collective", "independent"):
        raise ValueError(f"unknown merge mode {mode!r}")
    if mode == "collective" and len(set(n_upd)) != 1:
        raise LedgerError(f"collective merge needs the same number of updates on every rank, got {n_upd}")
    positions = max(lg.positions for lg in ledgers)
    meta = {"merged_from": [str(p) for p in paths], "merge_mode": mode, "ranks": len(ledgers)}
    w = LedgerWriter(out, positions=positions, meta=meta)

    keys = [_merge_keys(lg, r, mode == "collective") for r, lg in enumerate(ledgers)]
    cols = [np.concatenate([k[j] for k in keys]) for j in range(5)]
    order = np.lexsort(cols[::-1])
    kth: list[list[int]] = [list(np.flatnonzero(lg.events["kind"] == UPDATE)) for lg in ledgers]
    merged_done: set[int] = set()
    slot = None
    for o in order:
        r, i = int(cols[3][o]), int(cols[4][o])
        if (int(cols[0][o]), int(cols[1][o])) != slot:
            if slot is not None:
                w.collective()  # a point every rank has passed: a SYNC event before the next event
            slot = (int(cols[0][o]), int(cols[1][o]))
        lg = ledgers[r]
        e = lg.events[i]
        k = int(e["kind"])
        w.rank = int(e["rank"])
        if k in (SCORE, LOOK):
            vals = np.asarray(lg.nll[e["nll_off"] : e["nll_off"] + e["npos"]])
            w._scored(k, Ranges(lg.event_ranges(i)), vals, int(e["version"]), int(e["flags"]))
        elif k == UPDATE and mode == "independent":
            w.update(Ranges(lg.event_ranges(i)), lg.event_touched(i), int(e["version"]))
        elif k == UPDATE:
            j = int(cols[1][o])  # this is the rank's (j+1)-th update: merged with every rank's, where it first comes
            if j in merged_done:
                continue
            merged_done.add(j)
            parts = [g.event_ranges(int(kth[q][j])) for q, g in enumerate(ledgers)]
            touched = sorted({t for q, g in enumerate(ledgers) for t in g.event_touched(int(kth[q][j]))})
            w.rank = 0
            w.update(Ranges(np.concatenate(parts)), touched, int(ledgers[0].events[int(kth[0][j])]["version"]))
        elif k == META:
            m = _meta_by_seq(lg).get(int(e["seq"]), {})
            w.meta(**{**{k_: v for k_, v in m.items() if k_ != "seq"}, "rank": int(e["rank"])})
    w.close(complete=all(lg.complete for lg in ledgers))
    return {"mode": mode, "ranks": len(ledgers), "updates_per_rank": n_upd, "path": str(out),
            "complete": all(lg.complete for lg in ledgers)}


def _merge_keys(lg: Ledger, rank: int, collective: bool) -> tuple[np.ndarray, ...]:
    """Sort keys of a rank's events other than SYNC: (collectives entered before it, updates before it in
    collective mode, 1 for an update in collective mode, rank, index)."""
    ev = lg.events
    n = len(ev)
    kinds = np.asarray(ev["kind"])
    at = np.where(kinds == SYNC, np.arange(n), -1)
    last = np.maximum.accumulate(at) if n else at
    epoch = np.where(last >= 0, np.asarray(ev["version"])[np.maximum(last, 0)], 0)
    upd = (kinds == UPDATE).astype(np.int64)
    before = np.cumsum(upd) - upd if collective else np.zeros(n, np.int64)
    is_upd = upd if collective else np.zeros(n, np.int64)
    keep = kinds != SYNC
    idx = np.arange(n)
    return (epoch[keep].astype(np.int64), before[keep], is_upd[keep], np.full(int(keep.sum()), rank, np.int64),
            idx[keep])


def _meta_by_seq(lg: Ledger) -> dict[int, dict]:
    cache = getattr(lg, "_meta_by_seq", None)
    if cache is None:
        cache = {int(m["seq"]): m for m in lg.metas if "seq" in m}
        lg._meta_by_seq = cache
    return cache


def disk_size(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


__all__ = ["FORMAT", "SCORE", "UPDATE", "LOOK", "META", "SYNC", "KIND_NAMES", "FLAG_GRAD", "FLAG_EXPORT", "NONE",
           "Ledger", "LedgerWriter", "LedgerObserver", "LedgerError", "KindRanges", "Ranges", "Tile", "iter_tiles",
           "merge", "to_ranges", "disk_size", "first_seqs"]
