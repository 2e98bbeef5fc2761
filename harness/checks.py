"""Checks on a ledger: C3 score-before-update, C4 single pass (scored exactly once, count = validation length, the
reported score = the sum of first scores), coverage, and the reported bpb against the bpb reconstructed from the
ledger with the canonical byte table. Every failed check names the first offending position and the events (seqs)
involved.

The checks read the ledger tile by tile (:func:`harness.ledger.iter_tiles`), so the full 62M-position split is
checked in seconds with bounded memory. ``bytes_at`` (bytes of the target at each position, the canonical LUT of
``reference_model.metric``) may be a memory-mapped array.

Traced scripts (``traced=True``): the tracer cannot see which computation a script adds to its reported score, so a
position's SCORE is the first computation of its prediction inside the reported evaluation and later computations
are LOOK events. Two more questions are then asked of the gap between the reported score and the first scores:
was the position's prediction recomputed after an update that read it (the reported score came from a state trained
on the token: C3), and if no such recomputation exists, the reported probabilities were not the model's observed
full distributions at all (C2) — unless the scorer took every full distribution out of torch, where a mixture
normalized outside torch cannot be told from a broken one (WARN: cannot verify).

Ambiguous reads (META "ambiguous-read" events from the tracer): positions an update read through token ids whose
origin the tracer lost and whose window occurs in the training shards too. They are never a C3 failure; when one
was read before its first score, the ``ambiguous-provenance`` check says so (WARN: could not tell).

Leak magnitude: every C3/C4 failure states the reported score against the score of each position's first look
(its earliest prediction in the reported evaluation, SCORE or LOOK): what the leak is worth.

Restores (META "restore" events from the tracer): an update that a later restore reverted (the state returned to
its content before the update) counts against a position only if the position was first scored before the restore;
positions read by it and scored after the restore are the PG-TTT-006 gray case (a warm-up on validation tokens with
weights and optimizer state reset): WARN, not a C3 failure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audits.dynamic_result import (TIMELINE_CAP, VIOLATION_CAP, Check, Timeline, TimelineEvent, Violation)
from harness.ledger import FLAG_EXPORT, LOOK, NONE, SCORE, UPDATE, KindRanges, Ledger, first_seqs, iter_tiles

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


REFERENCE_TOLERANCE = Tolerance(1e-5, 1e-6)
SCRIPT_TOLERANCE = Tolerance(2e-4, 1e-4)   # the script's own fused kernels and precision vs our log-softmax


@dataclass
class Outcome:
    checks: list[Check]
    reconstructed: dict
    violations: list[tuple[int, int, int]]      # a sample of (position, score_seq, update_seq) C3 violations
    stats: dict = field(default_factory=dict)

    def by_id(self, check_id: str) -> Check:
        return next(c for c in self.checks if c.id == check_id)


class _First:
    """The smallest position with a property, over tiles visited in position order."""

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


def domain_of(ledger: Ledger) -> tuple[int, int]:
    """Target positions [first, last] the evaluation must score: its begin record, else 1..N-1."""
    b = ledger.begin or {}
    first = int(b.get("first_position", 1))
    last = int(b.get("last_position", ledger.positions - 1))
    return first, last


_DOC_ADAPTER = re.compile(r"lora/doc(\d+)$")


def scoped_updates(ledger: Ledger, updates: KindRanges, doc_starts: Any = None) -> tuple[KindRanges, str]:
    """The positions each update could have informed the score of.

    ``global`` state (the default): an update reading p affects every later score of p. ``per-document`` state
    (declared by the evaluation's begin record, or implied when every update touches only per-document adapters
    ``lora/doc{i}`` and ``doc_starts`` is known): position p of document i (``doc_starts[i] < p <= doc_starts[i+1]``)
    is scored by the shared weights plus adapter i, so an update matters to p only if it touches adapter i; the
    boundary token a document reads as its first input belongs to the previous document and its adapter.
    """
    begin = ledger.begin or {}
    scope = begin.get("state_scope", "global")
    starts = begin.get("doc_starts", doc_starts)
    if updates.touched is None or not len(updates) or starts is None:
        return updates, scope
    docs = []
    for t in ledger.touched:
        ids = [_DOC_ADAPTER.match(name) for name in t]
        docs.append([int(m.group(1)) for m in ids] if t and all(ids) else None)
    if scope != "per-document" and not all(d is not None for d in docs):
        return updates, scope
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], np.iinfo(np.int64).max - 1)
    out = {k: [] for k in ("start", "stop", "seq", "version", "touched")}
    for j in range(len(updates)):
        t = int(updates.touched[j])
        ids = docs[t] if 0 <= t < len(docs) else None
        spans = [(updates.start[j], updates.stop[j])] if ids is None else \
            [(max(updates.start[j], starts[i] + 1), min(updates.stop[j], ends[i] + 1)) for i in ids if i < starts.size]
        for a, b in spans:
            if b > a:
                for k, v in (("start", a), ("stop", b), ("seq", updates.seq[j]), ("version", updates.version[j]),
                             ("touched", t)):
                    out[k].append(v)
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
    return KindRanges(arr["start"], arr["stop"], arr["seq"], arr["version"], None, arr["touched"]), "per-document"


@dataclass
class _Scan:
    """What one pass over the ledger's tiles collects for the checks."""

    multi: _First = field(default_factory=_First)          # positions scored more than once
    unscored: _First = field(default_factory=_First)       # targets never scored
    outside: _First = field(default_factory=_First)        # scored positions outside the split
    c3: _First = field(default_factory=_First)             # read by an update before their first score
    upd_unscored: _First = field(default_factory=_First)   # read by an update, never scored
    relook: _First = field(default_factory=_First)         # traced: predicted again after an update read them
    warm: _First = field(default_factory=_First)           # read before scoring by updates a restore reverted
    c3_first: tuple[int, int, int] | None = None
    relook_first: tuple[int, int, int] | None = None
    warm_first: tuple[int, int, int] | None = None
    loss_sum: float = 0.0
    last_sum: float = 0.0
    tokens: int = 0
    nbytes: int = 0
    samples: list[tuple[int, int, int]] = field(default_factory=list)


def _scan(ledger: Ledger, n: int, domain: tuple[int, int], scores: KindRanges, updates: KindRanges,
          reverted: dict, looks: KindRanges | None, bytes_at: Any, traced: bool, tile: int) -> _Scan:
    """One pass over the ledger, tile by tile, in position order."""
    first_pos, last_pos = domain
    sc = _Scan()
    for t in iter_tiles(ledger, tile, 0, n, scores, updates, looks):
        inside = np.zeros(t.hi - t.lo, dtype=bool)
        inside[max(first_pos - t.lo, 0) : max(last_pos + 1 - t.lo, 0)] = True
        scored = t.count > 0
        sc.multi.add(t.count > 1, t.lo)
        sc.unscored.add(inside & ~scored, t.lo)
        sc.outside.add(~inside & scored, t.lo)
        first_update, any_update, relook_update = t.first_update, t.first_update, t.first_update
        restored = np.zeros(t.hi - t.lo, dtype=bool)
        for r, kr in reverted.items():  # a reverted update counts for what was scored (or looked at) before r
            fr = first_seqs(kr, t.lo, t.hi)
            first_update = np.minimum(first_update, np.where(t.first_score < r, fr, NONE))
            any_update = np.minimum(any_update, fr)
            if traced:
                relook_update = np.minimum(relook_update, np.where(t.last_look < r, fr, NONE))
            restored |= (fr < t.first_score) & (t.first_score > r)
        bad = scored & (first_update < t.first_score)
        idx = sc.c3.add(bad, t.lo)
        if idx.size:
            if sc.c3_first is None:
                sc.c3_first = (t.lo + int(idx[0]), int(t.first_score[idx[0]]), int(first_update[idx[0]]))
            take = idx[np.linspace(0, idx.size - 1, min(idx.size, 64)).astype(int)]
            sc.samples.extend((t.lo + int(i), int(t.first_score[i]), int(first_update[i])) for i in take)
        idx = sc.warm.add(scored & ~bad & restored, t.lo)
        if idx.size and sc.warm_first is None:
            sc.warm_first = t.lo + int(idx[0]), int(t.first_score[idx[0]]), int(any_update[idx[0]])
        sc.upd_unscored.add(inside & ~scored & (any_update != NONE), t.lo)
        sc.tokens += int(scored.sum())
        sc.loss_sum += float(t.first_nll[scored].sum(dtype=np.float64))
        if bytes_at is not None:
            sc.nbytes += int(np.asarray(bytes_at[t.lo : t.hi])[scored].sum(dtype=np.int64))
        if traced:
            later = scored & (t.last_look > t.first_score)
            re = later & (relook_update > t.first_score) & (relook_update < t.last_look)
            idx = sc.relook.add(re, t.lo)
            if idx.size and sc.relook_first is None:
                sc.relook_first = (t.lo + int(idx[0]), int(t.last_look[idx[0]]), int(relook_update[idx[0]]))
            chosen = np.where(later, t.last_look_nll, t.first_nll)
            sc.last_sum += float(chosen[scored].astype(np.float64).sum())
    return sc


def check_ledger(ledger: Ledger, bytes_at: Any = None, reported: dict | None = None,
                 domain: tuple[int, int] | None = None, tol: Tolerance | None = None, traced: bool = False,
                 look_window: tuple[int, int] | None = None, doc_starts: Any = None,
                 repeats: tuple[Any, Any] | None = None, tile: int = 1 << 20) -> Outcome:
    """Every check on one ledger. ``reported`` defaults to the evaluation's end record; ``domain`` to its begin
    record; ``doc_starts`` (BOS positions) lets per-document adapters be scoped (see :func:`scoped_updates`);
    ``repeats`` (positions, NLL): same-state predictions the reported mean counts again (a sliding window's
    re-scored tail, :func:`harness.derive.derive`), counted in the comparison with the reported pair."""
    reported = reported if reported is not None else _reported_from(ledger)
    tol = tol or (SCRIPT_TOLERANCE if traced else REFERENCE_TOLERANCE)
    first_pos, last_pos = domain or domain_of(ledger)
    n = max(ledger.positions, last_pos + 1)
    scores = ledger.kind_ranges(SCORE)
    updates, scope = scoped_updates(ledger, ledger.kind_ranges(UPDATE), doc_starts)
    updates, reverted = split_reverted(ledger, updates)
    looks = None
    if traced:
        looks = ledger.kind_ranges(LOOK)
        if look_window is not None:
            looks = looks.in_seq(look_window[0], look_window[1])

    sc = _scan(ledger, n, (first_pos, last_pos), scores, updates, reverted, looks, bytes_at, traced, tile)
    multi, unscored, outside, c3, upd_unscored, relook, warm = (sc.multi, sc.unscored, sc.outside, sc.c3,
                                                                sc.upd_unscored, sc.relook, sc.warm)
    c3_first, relook_first, warm_first = sc.c3_first, sc.relook_first, sc.warm_first
    loss_sum, last_sum, tokens, nbytes, samples = sc.loss_sum, sc.last_sum, sc.tokens, sc.nbytes, sc.samples
    expected = last_pos - first_pos + 1
    tail = ""
    if tokens and unscored.n and outside.n == 0 and unscored.n == last_pos - unscored.pos + 1:
        tail = (f"; only the last {unscored.n:,} targets were never scored: a script that scores whole windows of "
                f"its sequence length drops a shorter tail, so audit with --val-tokens a multiple of it (N targets "
                f"= N+1 tokens)")
    rec_loss = loss_sum / tokens if tokens else None
    rec_bpb = loss_sum / (nbytes * LN2) if nbytes else None
    recon = {"val_loss": rec_loss, "val_bpb": rec_bpb, "loss_sum": loss_sum, "tokens": tokens,
             "bytes": nbytes if bytes_at is not None else None}
    if traced:
        recon["last_look_val_loss"] = last_sum / tokens if tokens else None

    checks: list[Check] = []
    if ledger.complete:
        checks.append(Check("ledger-complete", "DATA", "PASS", f"ledger complete: {len(ledger.events):,} events"))
    else:
        checks.append(Check("ledger-complete", "DATA", "WARN",
                            f"ledger incomplete: the run stopped before closing it (killed or crashed); the checks "
                            f"cover the {len(ledger.events):,} events flushed before that"))

    # C4: exactly once
    if multi.n == 0:
        checks.append(Check("scored-once", "C4", "PASS", f"every scored position was scored exactly once "
                                                         f"({tokens:,} positions)"))
    else:
        p = multi.pos
        seqs = _seqs_covering(scores, p)
        checks.append(Check("scored-once", "C4", "FAIL",
                            f"{multi.n:,} positions were scored more than once (C4: single left-to-right pass)",
                            Violation(p, seqs[0], _first_update_between(updates, p, seqs),
                                      f"position {p} scored {len(seqs)} times, at seqs {_seq_list(seqs)}"
                                      + _between_note(ledger, updates, p, seqs))))
    # C4: count
    if tokens == expected and outside.n == 0:
        checks.append(Check("scored-count", "C4", "PASS",
                            f"{tokens:,} positions scored = {expected:,} validation targets (positions "
                            f"{first_pos}..{last_pos}; N+1 tokens give N targets)"))
    else:
        p = unscored.pos if unscored.pos is not None else outside.pos
        checks.append(Check("scored-count", "C4", "FAIL",
                            f"{tokens:,} positions scored, but the validation split has {expected:,} targets "
                            f"(positions {first_pos}..{last_pos}; N+1 tokens give N targets){tail}",
                            Violation(p, None, None, "first position where the count differs: "
                                      + ("never scored" if p == unscored.pos else "scored outside the split"))
                            if p is not None else None))
    # DATA: coverage
    if unscored.n == 0 and outside.n == 0:
        if upd_unscored.n:
            checks.append(Check("coverage", "DATA", "WARN",
                                f"every target scored, yet updates read {upd_unscored.n:,} positions that were never "
                                f"scored", Violation(upd_unscored.pos, None, None, "read by an update, never scored")))
        else:
            checks.append(Check("coverage", "DATA", "PASS", f"the whole split {first_pos}..{last_pos} is covered"))
    else:
        p = unscored.pos if unscored.pos is not None else outside.pos
        end = _run_end(scores, p, last_pos) if p == unscored.pos else p
        what = (f"{unscored.n:,} of {expected:,} targets never scored" if unscored.n else "") + \
               ("; " if unscored.n and outside.n else "") + \
               (f"{outside.n:,} scored positions lie outside the split" if outside.n else "")
        checks.append(Check("coverage", "DATA", "FAIL", what + tail,
                            Violation(p, None, None, f"positions {p}..{end} never scored" if p == unscored.pos
                                      else f"position {p} is outside {first_pos}..{last_pos}")))
    # C3
    n_upd = int((ledger.events["kind"] == UPDATE).sum())
    rev_note = "; updates a restore reverted count for scores made before it" if reverted else ""
    if c3.n == 0:
        checks.append(Check("score-before-update", "C3", "PASS",
                            f"no position was read by an update before its first score ({n_upd:,} updates, "
                            f"{scope} state{rev_note})"))
    else:
        p, s, u = c3_first
        checks.append(Check("score-before-update", "C3", "FAIL",
                            f"{c3.n:,} positions were read by an update before they were scored (C3: the state that "
                            f"scores a token must not have been trained on it)",
                            Violation(p, s, u, f"position {p}: updated at seq {u}{_touched_note(ledger, u)}, "
                                               f"first scored at seq {s}")))
    if warm.n:
        p, s, u = warm_first
        r = min(r for r in reverted if r < s)
        checks.append(Check("warmup-restored", "C3", "WARN",
                            f"{warm.n:,} positions were read by updates before they were scored, but a restore "
                            f"returned every parameter those updates changed to its content before them, and no "
                            f"optimizer state carried them on, before the positions were scored: PG-TTT-006 (gray: a "
                            f"warm-up on validation tokens, accepted when weights and optimizer state are reset, "
                            f"#1530; synthetic warm-up tokens avoid the question)",
                            Violation(p, s, u, f"position {p}: read by the update at seq {u}"
                                               f"{_touched_note(ledger, u)}, reverted by the restore at seq {r}"
                                               f"{_restore_note(ledger, r)}, first scored at seq {s}")))

    # reported vs reconstructed (counting the repeats the reported mean counts)
    rep_loss, rep_bpb = _f(reported.get("val_loss")), _f(reported.get("val_bpb"))
    counted_loss, counted_tokens, counted_bytes = loss_sum, tokens, nbytes
    if repeats is not None and len(repeats[0]) and tokens:
        rp, rv = np.asarray(repeats[0], dtype=np.int64), np.asarray(repeats[1], dtype=np.float64)
        counted_loss, counted_tokens = loss_sum + float(rv.sum()), tokens + rp.size
        if bytes_at is not None:
            counted_bytes = nbytes + int(np.asarray(bytes_at)[rp].sum(dtype=np.int64))
        checks.append(_repeats_check(rp, loss_sum, tokens, nbytes, counted_loss, counted_tokens, counted_bytes,
                                     bytes_at is not None))
        rec_loss = counted_loss / counted_tokens
    loss_check, gap = _loss_check(rep_loss, rec_loss, tol, traced, relook, relook_first, scores, recon,
                                  counted_tokens - tokens)
    checks.append(loss_check)
    checks.append(_bpb_check(bytes_at, rep_loss, rep_bpb, rec_bpb, counted_tokens, counted_bytes, tol,
                             counted_tokens != tokens))
    if traced:
        ev = ledger.events
        exported = int(ev["npos"][(ev["kind"] == SCORE) & ((ev["flags"] & FLAG_EXPORT) != 0)].sum())
        checks.extend(_traced_checks(gap, tol, relook, relook_first, scores, recon, exported >= tokens > 0))
    amb = ambiguous_check(ledger, scores, tile)
    if amb is not None:
        checks.append(amb)
    recon["leak"] = leak = leak_of(ledger, scores, looks if traced else ledger.kind_ranges(LOOK), bytes_at, reported,
                                   tile, repeats[0] if repeats is not None else None)
    if leak is not None:
        for c in checks:
            if c.verdict == "FAIL" and c.condition in ("C3", "C4"):
                c.message += "; " + leak["sentence"]

    return Outcome(checks, recon, _spread(samples, VIOLATION_CAP),
                   {"multi": multi.n, "unscored": unscored.n, "outside": outside.n, "c3": c3.n,
                    "relook": relook.n, "expected": expected, "updates": n_upd})


def _repeats_check(rp, loss_sum, tokens, nbytes, counted_loss, counted_tokens, counted_bytes, has_bytes) -> Check:
    """DATA WARN: the reported mean counts some targets more than once (from the state that first scored them, so
    nothing leaks), which is not the canonical once-per-target mean; says by how much it moves the score."""
    uniq = np.unique(rp)
    what = (f"{rp.size:,} repeated predictions of the split's last {uniq.size:,} targets ({int(uniq.min())}.."
            f"{int(uniq.max())}), each from the state that first scored it, by windows running past the split's "
            f"end, are counted in the reported mean")
    if has_bytes and nbytes and counted_bytes:
        once, counted = loss_sum / (nbytes * LN2), counted_loss / (counted_bytes * LN2)
        effect = f"{counted:.4f} bpb as counted, {once:.4f} bpb with every target once ({counted - once:+.4f} bpb)"
    else:
        once, counted = loss_sum / tokens, counted_loss / counted_tokens
        effect = f"{counted:.4f} nats/token as counted, {once:.4f} with every target once ({counted - once:+.4f})"
    return Check("repeated-targets", "DATA", "WARN",
                 f"{what}: no information reaches them (C3, C4 unaffected), but the score is not the canonical "
                 f"once-per-target mean: {effect}",
                 Violation(int(uniq.min()), None, None, f"positions {int(uniq.min())}..{int(uniq.max())} counted "
                                                        f"{rp.size / uniq.size + 1:.0f} times on average"))


def _loss_check(rep_loss: float | None, rec_loss: float | None, tol: Tolerance, traced: bool, relook: _First,
                relook_first: tuple[int, int, int] | None, scores: KindRanges,
                recon: dict, repeats: int = 0) -> tuple[Check, float | None]:
    """reported-loss: the reported val_loss against the first-pass loss (with the `repeats` the reported mean
    counts); also the gap (None when not compared)."""
    if rep_loss is None or rec_loss is None:
        return Check("reported-loss", "C4", "WARN", "no reported val_loss to compare with the ledger"
                     if rep_loss is None else "nothing was scored"), None
    gap = rep_loss - rec_loss
    lim = tol.loss()
    what = "the first computation of each position's prediction" if traced else "the first score of each position"
    if repeats:
        what += f" and the {repeats:,} repeats it counts"
    if abs(gap) <= lim:
        return Check("reported-loss", "C4", "PASS", f"reported val_loss {rep_loss:.6f} = {rec_loss:.6f} from {what} "
                                                    f"(|diff| {abs(gap):.2e} <= {lim:.1e})"), gap
    fv = None
    if traced and relook_first is not None:
        p, s, u = relook_first
        fv = Violation(p, s, u, f"position {p}: first scored at seq "
                                f"{_first_seq(scores, p)}, trained on at seq {u}, predicted again at seq {s}")
    msg = (f"reported val_loss {rep_loss:.6f} differs from {rec_loss:.6f}, the sum of {what} "
           f"(diff {gap:+.6f} > {lim:.1e})")
    if traced and relook.n == 0:
        # nothing was recomputed after training on it: the gap is in the distributions, not the pass (C2)
        return Check("reported-loss", "C4", "WARN", msg + "; no position was scored again after training on it, so "
                                                          "the gap is charged to C2 (observed-distributions)"), gap
    return Check("reported-loss", "C4", "FAIL", msg + ": the reported score is not the first-pass score"
                 + (f"; the last computations give {recon['last_look_val_loss']:.6f}"
                    if traced and recon.get("last_look_val_loss") is not None else ""), fv), gap


def _bpb_check(bytes_at: Any, rep_loss: float | None, rep_bpb: float | None, rec_bpb: float | None, tokens: int,
               nbytes: int, tol: Tolerance, repeated: bool = False) -> Check:
    """reported-bpb: the bytes the reported (val_loss, val_bpb) pair implies against the canonical byte table
    (`tokens` and `nbytes` counting the repeats the reported mean counts, when `repeated`)."""
    if bytes_at is None:
        return Check("reported-bpb", "BYTES", "WARN", "no byte table: bpb not reconstructed")
    if rep_bpb is None or rep_loss is None or not tokens or not rep_bpb:
        return Check("reported-bpb", "BYTES", "WARN", "no reported val_bpb to compare"
                     + (f"; reconstructed val_bpb {rec_bpb:.6f}" if rec_bpb is not None else ""))
    implied = rep_loss * tokens / (LN2 * rep_bpb)
    rel = implied / nbytes - 1 if nbytes else float("inf")
    lim = tol.bytes_rel + tol.rel_printed(rep_loss) + tol.rel_printed(rep_bpb)
    msg = (f"reported val_bpb {rep_bpb:.6f}, reconstructed {rec_bpb:.6f}; the reported pair implies "
           f"{implied:,.0f} bytes, the canonical byte table gives {nbytes:,}"
           + (" (counting the repeats)" if repeated else ""))
    return Check("reported-bpb", "BYTES", "PASS" if abs(rel) <= lim else "FAIL",
                 msg + (f" (rel. diff {rel:+.2e})" if abs(rel) > lim else ""))


def _traced_checks(gap, tol, relook, relook_first, scores, recon, exported: bool) -> list[Check]:
    """C3 and C2 read off the gap between the reported score and the first computations. ``exported``: every
    scored position's full distribution left torch (numpy), so the reported probabilities may come from a
    normalized mixture the trace cannot see."""
    out = []
    beyond = gap is not None and abs(gap) > tol.loss()
    if not beyond:
        out.append(Check("reported-from-trained-state", "C3", "PASS",
                         "the reported score equals the first computations; later recomputations "
                         f"({relook.n:,} positions predicted again after an update read them) are not reported"
                         if relook.n else "the reported score equals the first computations"))
        out.append(Check("observed-distributions", "C2", "PASS",
                         "the reported score is -log p(x_t) of the model's observed full distributions "
                         "(softmax over the vocabulary-sized projection)"))
        return out
    if relook.n:
        p, s, u = relook_first
        out.append(Check("reported-from-trained-state", "C3", "FAIL",
                         f"the reported score is {'below' if gap < 0 else 'above'} the first computations by "
                         f"{abs(gap):.4f} nats/token and {relook.n:,} positions were predicted again after an "
                         f"update that read them: the reported score came from a state trained on the scored tokens",
                         Violation(p, s, u, f"position {p}: first scored at seq {_first_seq(scores, p)}, read by "
                                            f"the update at seq {u}, predicted again at seq {s}")))
        out.append(Check("observed-distributions", "C2", "PASS",
                         "the gap between reported and first-computation scores is explained by recomputation after "
                         "training (C3), not by the distributions"))
    else:
        out.append(Check("reported-from-trained-state", "C3", "PASS",
                         "no position was predicted again after an update that read it"))
        if exported:
            out.append(Check("observed-distributions", "C2", "WARN",
                             f"cannot verify: the reported val_loss is {abs(gap):.4f} nats/token "
                             f"{'below' if gap < 0 else 'above'} the NLL of the full distributions the model computed, "
                             f"no update explains it, and the scorer took "
                             f"every one of those full distributions out of torch (numpy) before scoring: a mixture "
                             f"normalized there (a legal prefix-only n-gram tilt, PG-NG-005) and a gold-token mixture "
                             f"(PG-NG-001) look the same from the trace, and the C2 probe needs the scorer's own "
                             f"distribution, which a script does not expose; the static audit's verdict decides"))
            return out
        verdict = "FAIL" if gap < 0 else "WARN"
        out.append(Check("observed-distributions", "C2", verdict,
                         f"the reported val_loss is {abs(gap):.4f} nats/token {'below' if gap < 0 else 'above'} the "
                         f"NLL of the full distributions the model computed for those positions, and no update "
                         f"explains it: the reported probabilities are not the model's committed, normalized "
                         f"distributions (gold-token mixing, byte-level PPM, oracle selection, a scale factor)"))
    return out


def split_reverted(ledger: Ledger, updates: KindRanges) -> tuple[KindRanges, dict[int, KindRanges]]:
    """(updates never reverted, {restore seq: the updates it reverted}) from the ledger's restore records. When
    several ranks reverted the same update, the latest restore counts (the global state is restored last)."""
    at: dict[int, int] = {}
    for m in ledger.metas:
        if m.get("event") == "restore" and "seq" in m:
            for v in m.get("reverted", ()):
                at[int(v)] = max(at.get(int(v), -1), int(m["seq"]))
    if not at or not len(updates):
        return updates, {}
    rev = np.array([at.get(int(v), NONE) for v in updates.version], dtype=np.int64)
    groups = {int(r): updates.where(rev == r) for r in np.unique(rev) if r != NONE}
    return updates.where(rev == NONE), groups


def _restore_note(ledger: Ledger, seq: int) -> str:
    m = next((m for m in ledger.metas if m.get("seq") == seq), None)
    if not m:
        return ""
    names = ", ".join(m.get("names", [])[:3])
    return f" (state back to version {m.get('to_version')}{': ' + names if names else ''})"


def _reported_from(ledger: Ledger) -> dict:
    end = ledger.end or {}
    return {k: end.get(k) for k in ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes")}


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _seqs_covering(kr: KindRanges, p: int) -> list[int]:
    m = (kr.start <= p) & (kr.stop > p)
    return [int(s) for s in np.unique(kr.seq[m])]


def _first_seq(kr: KindRanges, p: int) -> int | None:
    s = _seqs_covering(kr, p)
    return s[0] if s else None


def _first_update_between(updates: KindRanges, p: int, seqs: list[int]) -> int | None:
    """The first update that read p after its first score (what a re-score reports on), if any."""
    u = [s for s in _seqs_covering(updates, p) if s > seqs[0]]
    return u[0] if u else None


def _between_note(ledger: Ledger, updates: KindRanges, p: int, seqs: list[int]) -> str:
    u = [s for s in _seqs_covering(updates, p) if seqs[0] < s < seqs[-1]]
    if not u:
        return ""
    return f"; {len(u)} updates read it in between (first at seq {u[0]}{_touched_note(ledger, u[0])})"


def _seq_list(seqs: list[int], k: int = 6) -> str:
    return ", ".join(map(str, seqs[:k])) + (f", ... ({len(seqs)} in all)" if len(seqs) > k else "")


def _touched_note(ledger: Ledger, seq: int) -> str:
    try:
        t = ledger.event_touched(ledger.index_of_seq(seq))
    except KeyError:
        return ""
    if not t:
        return ""
    names = ", ".join(t[:3]) + (f", +{len(t) - 3} more" if len(t) > 3 else "")
    return f" (touching {names})"


def _run_end(scores: KindRanges, p: int, last: int) -> int:
    """End of the run of never-scored positions starting at p (bounded by the split)."""
    after = scores.start[(scores.start > p)]
    nxt = int(after.min()) - 1 if after.size else last
    return min(nxt, last)


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).astype(int)
    return [items[i] for i in idx]


# --- timeline ---------------------------------------------------------------------------------------------------


def build_timeline(ledger: Ledger, violations: list[tuple[int, int, int]], cap: int = TIMELINE_CAP) -> Timeline:
    """SCORE and UPDATE ranges for the report's picture, merged into at most ``cap`` items."""
    kinds = []
    for name, kind in (("score", SCORE), ("update", UPDATE)):
        kr = ledger.kind_ranges(kind)
        kinds.append((name, kr))
    total = sum(len(kr) for _, kr in kinds)
    downsampled = total > cap
    events: list[TimelineEvent] = []
    for name, kr in kinds:
        if not len(kr):
            continue
        share = max(1, int(cap * len(kr) / total)) if downsampled else len(kr)
        group = max(1, math.ceil(len(kr) / share))
        for g in range(0, len(kr), group):
            sl = slice(g, g + group)
            events.append(TimelineEvent(name, int(kr.seq[sl][0]), int(kr.start[sl].min()), int(kr.stop[sl].max())))
    events.sort(key=lambda e: (e.seq, e.kind, e.start))
    return Timeline(positions=ledger.positions, max_seq=ledger.max_seq, downsampled=downsampled, events=events,
                    violations=list(violations))


# --- ambiguous reads, leak magnitude -----------------------------------------------------------------------------


def ambiguous_reads(ledger: Ledger) -> KindRanges:
    """The positions of the tracer's META "ambiguous-read" events, as ranges at the META's seq."""
    start, stop, seq = [], [], []
    for m in ledger.metas:
        if m.get("event") == "ambiguous-read" and "seq" in m:
            for a, b in m.get("ranges", ()):
                start.append(int(a))
                stop.append(int(b))
                seq.append(int(m["seq"]))
    arr = [np.asarray(x, dtype=np.int64) for x in (start, stop, seq)]
    return KindRanges(arr[0], arr[1], arr[2], np.zeros_like(arr[2]), None)


def ambiguous_check(ledger: Ledger, scores: KindRanges, tile: int) -> Check | None:
    """WARN when an update read, before their first score, positions whose tokens' origin was lost and whose
    window occurs in both splits: the trace cannot tell training on validation tokens from the same text in the
    training shards, so it accuses neither way."""
    amb = ambiguous_reads(ledger)
    if not len(amb):
        return None
    n_before, first = 0, None
    lo, hi = int(amb.start.min()), int(amb.stop.max())
    for a in range(lo, hi, tile):
        b = min(a + tile, hi)
        fa, fs = first_seqs(amb, a, b), first_seqs(scores, a, b)
        bad = np.flatnonzero((fa != NONE) & (fa < fs))
        n_before += int(bad.size)
        if bad.size and first is None:
            first = (a + int(bad[0]), int(fs[bad[0]]), int(fa[bad[0]]))
    if first is None:
        return None
    p, s, u = first
    return Check("ambiguous-provenance", "C3", "WARN",
                 f"{n_before:,} positions were read by updates before their first score through token ids whose "
                 f"origin the tracer lost (not read from a shard it could follow), and whose text occurs in the "
                 f"training shards as well as in validation: training on them cannot be told from training on "
                 f"the same text in the training split, so this is not counted as a C3 violation; the static "
                 f"audit, or a run whose data loader keeps the ids' origin visible, decides",
                 Violation(p, None if s == NONE else s, u,
                           f"position {p}: ambiguous read at seq {u}, "
                           + ("never scored" if s == NONE else f"first scored at seq {s}")))


def leak_of(ledger: Ledger, scores: KindRanges, looks: KindRanges, bytes_at: Any, reported: dict | None,
            tile: int, repeat_pos: Any = None) -> dict | None:
    """The reported score against the score of each scored position's first look (its earliest prediction in the
    reported evaluation, SCORE or LOOK — a traced script's evaluations before it, with another state, are not the
    one claimed): ``{"reported_loss", "first_look_loss", "reported_bpb", "first_look_bpb", "worth_bpb", "sentence"}``;
    None without a reported loss or scored positions. ``repeat_pos``: positions the reported mean counts again
    (a re-scored tail); the first-look score counts them as often, so only the leak is measured, not the weighting."""
    extra = np.bincount(np.asarray(repeat_pos, dtype=np.int64), minlength=ledger.positions) \
        if repeat_pos is not None and len(repeat_pos) else None
    rep_loss = _f((reported or {}).get("val_loss"))
    rep_bpb = _f((reported or {}).get("val_bpb"))
    if rep_loss is None or not len(scores):
        return None
    both = KindRanges(*(np.concatenate([getattr(scores, k), getattr(looks, k)])
                        for k in ("start", "stop", "seq", "version", "nll_at")))
    both = both.where(np.argsort(both.seq, kind="stable"))
    empty = ledger.kind_ranges(UPDATE).where(np.zeros(0, dtype=np.int64))
    loss_sum, tokens, nbytes = 0.0, 0, 0
    lo, hi = int(scores.start.min()), int(scores.stop.max())
    for t in iter_tiles(ledger, tile, lo, hi, both, empty):
        scored = first_seqs(scores, t.lo, t.hi) != NONE
        weight = scored.astype(np.int64)
        if extra is not None:
            weight += np.where(scored, extra[t.lo : t.hi], 0)
        loss_sum += float((t.first_nll.astype(np.float64) * weight)[scored].sum())
        tokens += int(weight.sum())
        if bytes_at is not None:
            nbytes += int((np.asarray(bytes_at[t.lo : t.hi]).astype(np.int64) * weight).sum())
    if not tokens:
        return None
    fl_loss = loss_sum / tokens
    fl_bpb = loss_sum / (nbytes * LN2) if nbytes else None
    out = {"reported_loss": rep_loss, "first_look_loss": fl_loss, "reported_bpb": rep_bpb, "first_look_bpb": fl_bpb,
           "worth_bpb": None}
    if rep_bpb is not None and fl_bpb is not None:
        out["worth_bpb"] = fl_bpb - rep_bpb
        out["sentence"] = (f"reported {rep_bpb:.4f} bpb; first-look {fl_bpb:.4f} bpb: the leak is worth "
                           f"{fl_bpb - rep_bpb:.4f} bpb")
    else:
        out["sentence"] = (f"reported {rep_loss:.4f} nats/token; first-look {fl_loss:.4f} nats/token: the leak is "
                           f"worth {fl_loss - rep_loss:.4f} nats/token")
    if abs(fl_loss - rep_loss) < 5e-5:
        out["sentence"] += (" (no earlier prediction of these positions was recorded, so this run cannot put a "
                            "number on it)")
    return out
