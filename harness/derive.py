"""From a traced run to the ledger of the evaluation it reported.

The tracer records every computation of a prediction as a LOOK; which of them were the scores is decided here: the
reported evaluation is the span back from the reported ``val_loss … val_bpb …`` line to the latest earlier
reported line such that the predictions in between cover the whole split, and inside it a position's SCORE is its
first prediction — counting every computation, or only gradient-free ones when that (and not the first)
reproduces the reported score ("score under no_grad, train with grad"). Everything else stays a LOOK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.checks import SCRIPT_TOLERANCE, Tolerance
from harness.ledger import FLAG_EXPORT, FLAG_GRAD, LOOK, META, SYNC, UPDATE, Ledger, LedgerWriter, Ranges, iter_tiles


@dataclass
class Derived:
    path: Path
    reported: dict
    window: tuple[int, int] | None            # derived seqs [lo, hi) of the reported evaluation
    hypothesis: str
    notes: list[str]


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


def _first_look_loss(raw: Ledger, lo: int, hi: int, grad_ok: bool) -> tuple[float, int]:
    total, count = 0.0, 0
    for _, _, vals, new in _window_looks(raw, lo, hi, grad_ok):
        total += float(vals[new].astype(np.float64).sum())
        count += int(new.sum())
    return total, count


def derive(raw: Ledger, out: Path, label: str | None = None, tol: Tolerance | None = None) -> Derived:
    """The ledger of the reported evaluation: SCORE = the first prediction of each position inside it, counting
    every computation (hypothesis "all"), or only those made without gradients ("no-grad": score under no_grad,
    train with grad) when that, and not the first, reproduces the reported score. Other computations stay LOOKs."""
    tol = tol or SCRIPT_TOLERANCE
    notes: list[str] = []
    final = _pick_report(_reports(raw), label)
    if final is None:
        notes.append("no line with val_loss and val_bpb was printed: nothing reported to compare")
    lo, hi = evaluation_window(raw, final)
    hypothesis = "all"
    if final is not None:
        t = Tolerance(tol.loss_abs, tol.bytes_rel, final.get("decimals"))
        fits = {}
        for h, grad_ok in (("all", True), ("no-grad", False)):
            s, c = _first_look_loss(raw, lo, hi, grad_ok)
            fits[h] = c > 0 and abs(s / c - float(final["val_loss"])) <= t.loss()
        if not fits["all"] and fits["no-grad"]:
            hypothesis = "no-grad"
            notes.append("the reported score is reproduced by the predictions made without gradients; the "
                         "gradient-enabled computations before them are training, not scoring")
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
    return Derived(out, reported, window, hypothesis, notes)



def ledger_nll(path: Path) -> np.ndarray:
    """First-score NLL per position of a derived ledger (NaN where never scored)."""
    led = Ledger(path)
    return np.concatenate([t.first_nll for t in iter_tiles(led)]).astype(np.float64)
