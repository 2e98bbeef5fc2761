"""coverage (DATA): the whole split is scored, nothing outside it, and no update read a position never scored."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger import NONE
from harness.ledger_checks.base import Facts, First, LedgerCheck, TileView


class Coverage(LedgerCheck):
    id = "coverage"
    order = 40

    def __init__(self):
        self.read_unscored = First()  # read by an update, never scored

    def accumulate(self, view: TileView) -> None:
        self.read_unscored.add(view.inside & ~view.scored & (view.any_update != NONE), view.lo)

    def verdict(self, f: Facts) -> Check:
        unscored, outside = f.unscored, f.outside
        if unscored.n == 0 and outside.n == 0:
            if self.read_unscored.n:
                return Check(self.id, "DATA", "WARN", f"every target scored, yet updates read "
                                                      f"{self.read_unscored.n:,} positions that were never scored",
                             Violation(self.read_unscored.pos, None, None, "read by an update, never scored"))
            return Check(self.id, "DATA", "PASS", f"the whole split {f.first_pos}..{f.last_pos} is covered")
        p = unscored.pos if unscored.pos is not None else outside.pos
        what = (f"{unscored.n:,} of {f.expected:,} targets never scored" if unscored.n else "") + \
               ("; " if unscored.n and outside.n else "") + \
               (f"{outside.n:,} scored positions lie outside the split" if outside.n else "")
        if p == unscored.pos:
            after = f.scores.start[f.scores.start > p]  # the run of never-scored positions starting at p
            end = min(int(after.min()) - 1 if after.size else f.last_pos, f.last_pos)
            detail = f"positions {p}..{end} never scored"
        else:
            detail = f"position {p} is outside {f.first_pos}..{f.last_pos}"
        return Check(self.id, "DATA", "FAIL", what + f.tail, Violation(p, None, None, detail))
