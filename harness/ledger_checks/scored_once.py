"""scored-once (C4): every scored position was scored exactly once (a single left-to-right pass)."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import Facts, First, LedgerCheck, TileView, seq_list, seqs_covering, touched_note


class ScoredOnce(LedgerCheck):
    id = "scored-once"
    order = 20

    def __init__(self):
        self.multi = First()

    def accumulate(self, view: TileView) -> None:
        self.multi.add(view.count > 1, view.lo)

    def verdict(self, f: Facts) -> Check:
        if self.multi.n == 0:
            return Check(self.id, "C4", "PASS", f"every scored position was scored exactly once ({f.tokens:,} "
                                                f"positions)")
        p = self.multi.pos
        seqs = seqs_covering(f.scores, p)
        later = [s for s in seqs_covering(f.updates, p) if s > seqs[0]]  # what a re-score reports on
        between = [s for s in later if s < seqs[-1]]
        note = (f"; {len(between)} updates read it in between (first at seq {between[0]}"
                f"{touched_note(f.ledger, between[0])})") if between else ""
        return Check(self.id, "C4", "FAIL",
                     f"{self.multi.n:,} positions were scored more than once (C4: single left-to-right pass)",
                     Violation(p, seqs[0], later[0] if later else None,
                               f"position {p} scored {len(seqs)} times, at seqs {seq_list(seqs)}{note}"))
