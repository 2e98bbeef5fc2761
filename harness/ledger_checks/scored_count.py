"""scored-count (C4): as many positions scored as the split has targets (N+1 tokens give N targets)."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import Facts, LedgerCheck


class ScoredCount(LedgerCheck):
    id = "scored-count"
    order = 30

    def verdict(self, f: Facts) -> Check:
        span = f"positions {f.first_pos}..{f.last_pos}; N+1 tokens give N targets"
        if f.tokens == f.expected and f.outside.n == 0:
            return Check(self.id, "C4", "PASS",
                         f"{f.tokens:,} positions scored = {f.expected:,} validation targets ({span})")
        p = f.unscored.pos if f.unscored.pos is not None else f.outside.pos
        return Check(self.id, "C4", "FAIL",
                     f"{f.tokens:,} positions scored, but the validation split has {f.expected:,} targets "
                     f"({span}){f.tail}",
                     Violation(p, None, None, "first position where the count differs: "
                               + ("never scored" if p == f.unscored.pos else "scored outside the split"))
                     if p is not None else None)
