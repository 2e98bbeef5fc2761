"""score-before-update (C3): no position was read by an update before its first score."""

from __future__ import annotations

import numpy as np

from audits.dynamic_result import Check, Violation
from harness.ledger import UPDATE
from harness.ledger_checks.base import (Facts, First, LedgerCheck, TileView, meta_ranges, read_before_scored,
                                        touched_note)

SAMPLES_PER_TILE = 64


def boundary_note(f: Facts) -> str:
    """How many document starts were read as leading context before the previous document scored them (the
    tracer's META "boundary-context" events: a document's BOS read by an update only as the first input of a row;
    not part of any UPDATE, since per-document evaluation takes the document boundaries as given)."""
    n, _ = read_before_scored(f, meta_ranges(f.ledger, "boundary-context", "positions"), unscored=False)
    if not n:
        return ""
    return (f"; not counted: {n:,} document BOS tokens that updates read only as the first input of the next "
            f"document's rows before the previous document scored them as its last target (per-document evaluation "
            f"takes the document boundaries as given, PG-TTT-005)")


class ScoreBeforeUpdate(LedgerCheck):
    id = "score-before-update"
    order = 50

    def __init__(self):
        self.c3 = First()
        self.first: tuple[int, int, int] | None = None   # (position, score seq, update seq)
        self.samples: list[tuple[int, int, int]] = []     # spread over the violations, for the timeline

    def accumulate(self, view: TileView) -> None:
        idx = self.c3.add(view.scored & (view.first_update < view.first_score), view.lo)
        if idx.size:
            if self.first is None:
                self.first = (view.lo + int(idx[0]), int(view.first_score[idx[0]]), int(view.first_update[idx[0]]))
            take = idx[np.linspace(0, idx.size - 1, min(idx.size, SAMPLES_PER_TILE)).astype(int)]
            self.samples.extend((view.lo + int(i), int(view.first_score[i]), int(view.first_update[i])) for i in take)

    def verdict(self, f: Facts) -> Check:
        note = boundary_note(f)
        if self.c3.n == 0:
            n_upd = int((f.ledger.events["kind"] == UPDATE).sum())
            rev = "; updates a restore reverted count for scores made before it" if f.reverted else ""
            return Check(self.id, "C3", "PASS", f"no position was read by an update before its first score "
                                                f"({n_upd:,} updates, {f.scope} state{rev}){note}")
        p, s, u = self.first
        return Check(self.id, "C3", "FAIL",
                     f"{self.c3.n:,} positions were read by an update before they were scored (C3: the state that "
                     f"scores a token must not have been trained on it){note}",
                     Violation(p, s, u, f"position {p}: updated at seq {u}{touched_note(f.ledger, u)}, "
                                        f"first scored at seq {s}"))
