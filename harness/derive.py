"""From a traced run to the ledger of the evaluation it reported.

The tracer records every computation of a prediction as a LOOK; which of them were the scores is decided here: the
reported evaluation is the span back from the reported ``val_loss … val_bpb …`` line to the latest earlier
reported line such that the predictions in between cover the whole split, and inside it a position's SCORE is its
first prediction — counting every computation, or only gradient-free ones when that (and not the first)
reproduces the reported score ("score under no_grad, train with grad"). Everything else stays a LOOK. A scorer
whose windows past the split's end score its last targets again is recognised, and the repeats it counted are
handed to the checks: they are same-state predictions, so no leak, but they weight the reported mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.checks import SCRIPT_TOLERANCE, Tolerance
from harness.ledger import (FLAG_EXPORT, FLAG_GRAD, LOOK, META, NONE, SYNC, UPDATE, Ledger, LedgerWriter, Ranges,
                            iter_tiles)


@dataclass
class Derived:
    path: Path
    reported: dict
    window: tuple[int, int] | None            # derived seqs [lo, hi) of the reported evaluation
    hypothesis: str
    notes: list[str]
    repeats: tuple[np.ndarray, np.ndarray]     # positions the reported score counts again, and their NLL


def _reports(raw: Ledger) -> list[dict]:
    return [m for m in raw.metas if m.get("event") == "report"]


def _pick_report(reports: list[dict], label: str | None) -> dict | None:
    if label:
        pat = re.compile(label)
        reports = [r for r in reports if pat.search(r.get("line", ""))]
    return reports[-1] if reports else None


def _expand(rng: np.ndarray) -> np.ndarray:
    if not len(rng):
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b) for a, b in rng])


def evaluation_window(raw: Ledger, final: dict | None) -> tuple[int, int]:
    """Raw seqs (lo, hi] of the evaluation whose result was reported: back from the reported line to the latest
    earlier reported line such that the predictions made in between cover every validation target (progress lines
    inside one evaluation are skipped that way); the whole run when there is no such line."""
    n = raw.positions
    ev = raw.events
    if final is None:
        return -1, int(ev["seq"][-1]) + 1 if len(ev) else 0
    hi = int(final["seq"])
    report_seqs = {int(m["seq"]) for m in _reports(raw)}
    covered = np.zeros(n, dtype=bool)
    covered[0] = True
    end = int(np.searchsorted(ev["seq"], hi))
    for i in range(end - 1, -1, -1):
        kind, seq = int(ev["kind"][i]), int(ev["seq"][i])
        if kind == META and seq in report_seqs and covered.all():
            return seq, hi
        if kind == LOOK:
            for a, b in raw.event_ranges(i):
                covered[a:b] = True
    return -1, hi


def _new_in_event(pos: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Positions of one computation not predicted before; in a batch of overlapping windows the earliest row wins."""
    first = np.zeros(pos.size, dtype=bool)
    first[np.unique(pos, return_index=True)[1]] = True
    return first & ~seen[pos]


def _context(rng: np.ndarray) -> np.ndarray:
    """Per predicted position of a LOOK: how many tokens of its row came before it (a row starting at s predicts
    s+1 .. s+m and is recorded as the range (s+1, s+m+1))."""
    if not len(rng):
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(1, b - a + 1) for a, b in rng])


def _window_looks(raw: Ledger, lo: int, hi: int, grad_ok: bool):
    """The LOOK events inside (lo, hi) that count as scoring under a hypothesis, in order, each with its expanded
    positions, NLL values and which of them are first predictions.

    One process: a position's first prediction is its first in time (in a batch, the earliest row). Ranks of a
    torchrun run (merged ledger): events of different ranks between two SYNC events were concurrent, so among the
    ranks' first predictions of a position there, the one with the longest context wins — what a sliding window
    scores when its windows are sharded over the ranks (a row in the same batch wins the same way)."""
    ev = raw.events
    slot = np.cumsum(ev["kind"] == SYNC)
    sel = [int(i) for i in np.flatnonzero((ev["kind"] == LOOK) & (ev["seq"] > lo) & (ev["seq"] < hi))
           if grad_ok or not ev["flags"][i] & FLAG_GRAD]
    seen = np.zeros(raw.positions, dtype=bool)
    k = 0
    while k < len(sel):
        group = [sel[k]]
        while k + len(group) < len(sel) and slot[sel[k + len(group)]] == slot[sel[k]]:
            group.append(sel[k + len(group)])
        k += len(group)
        looks = [(i, _expand(raw.event_ranges(i)), np.asarray(raw.nll[ev["nll_off"][i] : ev["nll_off"][i]
                                                                        + ev["npos"][i]])) for i in group]
        if len({int(ev["rank"][i]) for i in group}) == 1:
            for i, pos, vals in looks:
                new = _new_in_event(pos, seen)
                seen[pos] = True
                yield i, pos, vals, new
            continue
        yield from _concurrent(raw, looks, seen)


def _concurrent(raw: Ledger, looks: list, seen: np.ndarray):
    """First predictions among the concurrent looks of several ranks: per rank the first in time, across ranks the
    longest context (ties: the earlier event)."""
    ev = raw.events
    cand = []
    claimed: dict[int, np.ndarray] = {}
    for i, pos, _ in looks:
        mine = claimed.setdefault(int(ev["rank"][i]), np.zeros(raw.positions, dtype=bool))
        c = _new_in_event(pos, seen) & ~mine[pos]
        mine[pos[c]] = True
        cand.append(c)
    best = np.full(raw.positions, -1, dtype=np.int64)
    owner = np.full(raw.positions, -1, dtype=np.int64)
    for j, ((i, pos, _), c) in enumerate(zip(looks, cand)):
        ctx = _context(raw.event_ranges(i))
        better = c & (ctx > best[pos])
        best[pos[better]] = ctx[better]
        owner[pos[better]] = j
    for j, ((i, pos, vals), c) in enumerate(zip(looks, cand)):
        yield i, pos, vals, c & (owner[pos] == j)
    for _, pos, _ in looks:
        seen[pos] = True


def _first_look_loss(raw: Ledger, lo: int, hi: int, grad_ok: bool,
                     bytes_at: np.ndarray | None) -> tuple[float, int, int, np.ndarray, np.ndarray]:
    """(NLL sum, count and bytes of the first predictions, and the tail repeats: positions and NLL, see below)."""
    total, count, nbytes = 0.0, 0, 0
    ev = raw.events
    end = raw.positions
    version = np.full(end, NONE, dtype=np.int64)
    row_new: list[int] = []
    tails = []
    for i, pos, vals, new in _window_looks(raw, lo, hi, grad_ok):
        total += float(vals[new].astype(np.float64).sum())
        count += int(new.sum())
        if bytes_at is not None:
            nbytes += int(np.asarray(bytes_at)[pos[new]].sum(dtype=np.int64))
        v = int(ev["version"][i])
        version[pos[new]] = v
        at = 0
        for a, b in raw.event_ranges(i):
            m = int(b - a)
            k = int(new[at : at + m].sum())
            if k:
                row_new.append(k)
            if b == end:
                tails.append((pos[at : at + m], vals[at : at + m], new[at : at + m], v))
            at += m
    rp, rv = _tail_repeats(tails, row_new, version)
    return total, count, nbytes, rp, rv


def _tail_repeats(tails, row_new: list[int], version: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeats of the split's last targets by windows that run past its end, as sliding-window scorers written
    ``s = max(wlen - stride, 0)`` make them: each such row scores its last ``stride`` targets (``stride``: the
    usual number of new targets per row), so the rows after the first that reaches the end score the same final
    targets again, with less context. Only a repeat from the state that first scored the target counts (nothing
    learned since can reach it)."""
    if not tails or not row_new:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    vals, counts = np.unique(np.asarray(row_new), return_counts=True)
    stride = int(vals[np.argmax(counts)])
    pos_out, nll_out = [], []
    for pos, nll, new, v in tails:
        k = min(stride, pos.size)
        p, x, fresh = pos[-k:], nll[-k:], new[-k:]
        again = ~fresh & (version[p] == v)
        pos_out.append(p[again])
        nll_out.append(x[again])
    return np.concatenate(pos_out).astype(np.int64), np.concatenate(nll_out).astype(np.float32)


def _reading(raw: Ledger, lo: int, hi: int, final: dict, tol: Tolerance, bytes_at: np.ndarray | None,
             notes: list[str]) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    """(hypothesis, repeats) of the reading that reproduces the reported pair; see :func:`derive`."""
    t = Tolerance(tol.loss_abs, tol.bytes_rel, final.get("decimals"))
    rep_loss, rep_bpb = float(final["val_loss"]), float(final["val_bpb"])
    got = {h: _first_look_loss(raw, lo, hi, grad_ok, bytes_at) for h, grad_ok in (("all", True), ("no-grad", False))}
    none = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    readings = []  # (hypothesis, repeats, loss reproduced, bpb reproduced)
    for tail in (False, True):
        for h, (total, count, nbytes, rp, rv) in got.items():
            if tail:
                if not rp.size:
                    continue
                total += float(rv.sum(dtype=np.float64))
                count += int(rp.size)
                nbytes += int(np.asarray(bytes_at)[rp].sum(dtype=np.int64)) if bytes_at is not None else 0
            loss_ok = count > 0 and abs(total / count - rep_loss) <= t.loss()
            bpb_ok = bytes_at is None or not nbytes or not rep_bpb or t.implied_bytes(rep_loss, rep_bpb, count,
                                                                                     nbytes)[2]
            readings.append((h, (rp, rv) if tail else none, loss_ok, loss_ok and bpb_ok))
    pick = next((r for r in readings if r[3]), None) or next((r for r in readings if r[2]), None)
    if pick is None:
        return "all", none
    hypothesis, repeats = pick[0], pick[1]
    if hypothesis == "no-grad":
        notes.append("the reported score is reproduced by the predictions made without gradients; the "
                     "gradient-enabled computations before them are training, not scoring")
    if repeats[0].size:
        notes.append(f"the reported score counts the split's last targets again each time a window running "
                     f"past its end scored them ({repeats[0].size:,} repeats, each from the state that first "
                     f"scored it)")
    return hypothesis, repeats


def derive(raw: Ledger, out: Path, label: str | None = None, tol: Tolerance | None = None,
           bytes_at: np.ndarray | None = None) -> Derived:
    """The ledger of the reported evaluation: SCORE = the first prediction of each position inside it, counting
    every computation (hypothesis "all"), or only those made without gradients ("no-grad": score under no_grad,
    train with grad), with or without the split's last targets counted again as a tail-rescoring sliding window
    counts them (see :func:`_tail_repeats`). The first of these readings (in that order) that reproduces the
    reported pair is taken: its loss, and with ``bytes_at`` (the canonical bytes per position) its bpb too — the
    repeats of a long split move the loss by less than the printed digits but the bytes per token visibly. When
    only the loss is reproduced, the first reading that does is taken (and the BYTES check will say so)."""
    tol = tol or SCRIPT_TOLERANCE
    notes: list[str] = []
    final = _pick_report(_reports(raw), label)
    if final is None:
        notes.append("no line with val_loss and val_bpb was printed: nothing reported to compare")
    lo, hi = evaluation_window(raw, final)
    hypothesis = "all"
    repeats = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    if final is not None:
        hypothesis, repeats = _reading(raw, lo, hi, final, tol, bytes_at, notes)
    n = raw.positions
    w = LedgerWriter(out, positions=n, meta={"source": "trace", "trace": str(raw.path), "hypothesis": hypothesis})
    w.meta(event="begin", mode="traced script", n_tokens=n, first_position=1, last_position=n - 1,
           state_scope="global", window=[lo, hi], hypothesis=hypothesis)
    ev = raw.events
    metas = {int(m["seq"]): m for m in raw.metas if "seq" in m}
    scoring = {i: (pos, vals, new) for i, pos, vals, new in _window_looks(raw, lo, hi, hypothesis == "all")}
    d_lo = d_hi = None
    for i in range(len(ev)):
        kind, seq = int(ev["kind"][i]), int(ev["seq"][i])
        inside = lo < seq < hi
        if inside and d_lo is None:
            d_lo = w.seq
        w.rank = int(ev["rank"][i])
        if kind == LOOK:
            version, flags = int(ev["version"][i]), int(ev["flags"][i])
            if i in scoring:
                pos, vals, new = scoring[i]
                if new.any():
                    w.score(pos[new], vals[new], version, flags & FLAG_EXPORT)
                if (~new).any():
                    w.look(pos[~new], vals[~new], version, flags)
            else:
                vals = np.asarray(raw.nll[ev["nll_off"][i] : ev["nll_off"][i] + ev["npos"][i]])
                w.look(Ranges(raw.event_ranges(i)), vals, version, flags)
        elif kind == UPDATE:
            w.update(Ranges(raw.event_ranges(i)), raw.event_touched(i), int(ev["version"][i]))
        elif kind == META:
            m = metas.get(seq, {})
            w.meta(**{k: v for k, v in m.items() if k != "seq"}, raw_seq=seq)
        if inside:
            d_hi = w.seq
    reported = {}
    if final is not None:
        reported = {"val_loss": final["val_loss"], "val_bpb": final["val_bpb"], "decimals": final.get("decimals"),
                    "line": final.get("line")}
    w.meta(event="end", **reported)
    w.close(complete=raw.complete)
    window = (d_lo, d_hi) if d_lo is not None else None
    return Derived(out, reported, window, hypothesis, notes, repeats)



def ledger_nll(path: Path) -> np.ndarray:
    """First-score NLL per position of a derived ledger (NaN where never scored)."""
    led = Ledger(path)
    return np.concatenate([t.first_nll for t in iter_tiles(led)]).astype(np.float64)
