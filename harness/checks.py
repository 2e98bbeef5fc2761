"""Checks on a ledger: C3 score-before-update, C4 single pass (scored exactly once, count = validation length, the
reported score = the sum of first scores), coverage, and the reported bpb against the bpb reconstructed from the
ledger with the canonical byte table. Each check is a class in its own module of ``harness/ledger_checks/``; this
module reads the ledger once for all of them (:func:`check_ledger`) and holds what they share. Every failed check names the first offending position and the events (seqs)
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
(its earliest prediction in the reported evaluation, SCORE or LOOK): what the leak is worth. When the reported
evaluation holds no earlier prediction (training on the positions came before it: pre-eval TTT), a traced run's
earliest predictions before it are used, and the sentence says they came from another state.

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

from audits.dynamic_result import TIMELINE_CAP, VIOLATION_CAP, Check, Timeline, TimelineEvent
from harness.ledger import LOOK, NONE, SCORE, UPDATE, KindRanges, Ledger, first_seqs, iter_tiles
from harness.ledger_checks import discover
from harness.ledger_checks.base import LN2, Facts, TileView, Tolerance, finite


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


def _scan(facts: Facts, checks: list, looks: KindRanges | None) -> None:
    """The one pass over the ledger, tile by tile in position order: the shared totals into ``facts``, and each
    check's own facts through its ``accumulate``."""
    f = facts
    n = max(f.ledger.positions, f.last_pos + 1)
    for t in iter_tiles(f.ledger, f.tile, 0, n, f.scores, f.updates, looks):
        inside = np.zeros(t.hi - t.lo, dtype=bool)
        inside[max(f.first_pos - t.lo, 0) : max(f.last_pos + 1 - t.lo, 0)] = True
        scored = t.count > 0
        f.unscored.add(inside & ~scored, t.lo)
        f.outside.add(~inside & scored, t.lo)
        first_update, any_update, relook_update = t.first_update, t.first_update, t.first_update
        restored = np.zeros(t.hi - t.lo, dtype=bool)
        for r, kr in f.reverted.items():  # a reverted update counts for what was scored (or looked at) before r
            fr = first_seqs(kr, t.lo, t.hi)
            first_update = np.minimum(first_update, np.where(t.first_score < r, fr, NONE))
            any_update = np.minimum(any_update, fr)
            if f.traced:
                relook_update = np.minimum(relook_update, np.where(t.last_look < r, fr, NONE))
            restored |= (fr < t.first_score) & (t.first_score > r)
        view = TileView(t.lo, t.hi, inside, scored, t.count, t.first_score, first_update, any_update, restored)
        for c in checks:
            c.accumulate(view)
        f.tokens += int(scored.sum())
        f.loss_sum += float(t.first_nll[scored].sum(dtype=np.float64))
        if f.bytes_at is not None:
            f.nbytes += int(np.asarray(f.bytes_at[t.lo : t.hi])[scored].sum(dtype=np.int64))
        if f.traced:
            later = scored & (t.last_look > t.first_score)
            re = later & (relook_update > t.first_score) & (relook_update < t.last_look)
            idx = f.relook.add(re, t.lo)
            if idx.size and f.relook_first is None:
                f.relook_first = (t.lo + int(idx[0]), int(t.last_look[idx[0]]), int(relook_update[idx[0]]))
            chosen = np.where(later, t.last_look_nll, t.first_nll)
            f.last_sum += float(chosen[scored].astype(np.float64).sum())


def check_ledger(ledger: Ledger, bytes_at: Any = None, reported: dict | None = None,
                 domain: tuple[int, int] | None = None, tol: Tolerance | None = None, traced: bool = False,
                 look_window: tuple[int, int] | None = None, doc_starts: Any = None,
                 repeats: tuple[Any, Any] | None = None, tile: int = 1 << 20) -> Outcome:
    """Every check of ``harness/ledger_checks/`` on one ledger. ``reported`` defaults to the evaluation's end record;
    ``domain`` to its begin record; ``doc_starts`` (BOS positions) lets per-document adapters be scoped (see
    :func:`scoped_updates`); ``repeats`` (positions, NLL): same-state predictions the reported mean counts again (a
    sliding window's re-scored tail, :func:`harness.derive.derive`), counted in the comparison with the reported
    pair."""
    first_pos, last_pos = domain or domain_of(ledger)
    updates, scope = scoped_updates(ledger, ledger.kind_ranges(UPDATE), doc_starts)
    updates, reverted = split_reverted(ledger, updates)
    looks = None
    if traced:
        looks = ledger.kind_ranges(LOOK)
        if look_window is not None:
            looks = looks.in_seq(look_window[0], look_window[1])
    facts = Facts(ledger, bytes_at, reported if reported is not None else _reported_from(ledger),
                  tol or (SCRIPT_TOLERANCE if traced else REFERENCE_TOLERANCE), traced, first_pos, last_pos,
                  ledger.kind_ranges(SCORE), updates, reverted, scope, tile, repeats)
    by_id = {cls.id: cls() for cls in discover()}
    _scan(facts, list(by_id.values()), looks)
    checks = [c for c in (chk.verdict(facts) for chk in by_id.values()) if c is not None]

    tokens = facts.tokens
    recon = {"val_loss": facts.loss_sum / tokens if tokens else None, "val_bpb": facts.rec_bpb,
             "loss_sum": facts.loss_sum, "tokens": tokens, "bytes": facts.nbytes if bytes_at is not None else None}
    if traced:
        recon["last_look_val_loss"] = facts.last_look_loss
    reps = repeats[0] if repeats is not None else None
    recon["leak"] = leak = leak_of(ledger, facts.scores, looks if traced else ledger.kind_ranges(LOOK), bytes_at,
                                   facts.reported, tile, reps)
    if traced and look_window is not None and leak is not None and leak["unmeasured"]:
        wider = leak_of(ledger, facts.scores, ledger.kind_ranges(LOOK), bytes_at, facts.reported, tile, reps,
                        earlier=True)
        if wider is not None and not wider["unmeasured"]:
            recon["leak"] = leak = wider
    if leak is not None:
        for c in checks:
            if c.verdict == "FAIL" and c.condition in ("C3", "C4"):
                c.message += "; " + leak["sentence"]
    c3 = by_id["score-before-update"]
    return Outcome(checks, recon, _spread(c3.samples, VIOLATION_CAP),
                   {"multi": by_id["scored-once"].multi.n, "unscored": facts.unscored.n, "outside": facts.outside.n,
                    "c3": c3.c3.n, "relook": facts.relook.n, "expected": facts.expected,
                    "updates": int((ledger.events["kind"] == UPDATE).sum())})


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


def _reported_from(ledger: Ledger) -> dict:
    end = ledger.end or {}
    return {k: end.get(k) for k in ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes")}


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


def leak_of(ledger: Ledger, scores: KindRanges, looks: KindRanges, bytes_at: Any, reported: dict | None,
            tile: int, repeat_pos: Any = None, earlier: bool = False) -> dict | None:
    """The reported score against the score of each scored position's first look (its earliest prediction in the
    reported evaluation, SCORE or LOOK — a traced script's evaluations before it, with another state, are not the
    one claimed): ``{"reported_loss", "first_look_loss", "reported_bpb", "first_look_bpb", "worth_bpb", "sentence"}``;
    None without a reported loss or scored positions. ``repeat_pos``: positions the reported mean counts again
    (a re-scored tail); the first-look score counts them as often, so only the leak is measured, not the weighting.
    ``earlier``: ``looks`` reach back before the reported evaluation — what a run that trained on the positions
    before its reported evaluation first predicted them with (pre-eval TTT), the sentence says so."""
    extra = np.bincount(np.asarray(repeat_pos, dtype=np.int64), minlength=ledger.positions) \
        if repeat_pos is not None and len(repeat_pos) else None
    rep_loss = finite((reported or {}).get("val_loss"))
    rep_bpb = finite((reported or {}).get("val_bpb"))
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
           "worth_bpb": None, "unmeasured": abs(fl_loss - rep_loss) < 5e-5}
    first = ("first-look (the earliest predictions of these positions, made before the reported evaluation by "
             "another state of the model: for a run that trained on them first, the state before that training; "
             "the figure also carries whatever else changed in between, quantization included)") \
        if earlier else "first-look"
    if rep_bpb is not None and fl_bpb is not None:
        out["worth_bpb"] = fl_bpb - rep_bpb
        out["sentence"] = (f"reported {rep_bpb:.4f} bpb; {first} {fl_bpb:.4f} bpb: the leak is worth "
                           f"{fl_bpb - rep_bpb:.4f} bpb")
    else:
        out["sentence"] = (f"reported {rep_loss:.4f} nats/token; {first} {fl_loss:.4f} nats/token: the leak is "
                           f"worth {fl_loss - rep_loss:.4f} nats/token")
    if out["unmeasured"]:
        out["sentence"] += (" (no earlier prediction of these positions was recorded, so this run cannot put a "
                            "number on it)")
    return out
