"""ledger-complete (DATA): the run closed its ledger, so the other checks saw every event."""

from __future__ import annotations

from audits.dynamic_result import Check
from harness.ledger_checks.base import Facts, LedgerCheck


class LedgerComplete(LedgerCheck):
    id = "ledger-complete"
    order = 10

    def verdict(self, f: Facts) -> Check:
        n = len(f.ledger.events)
        if f.ledger.complete:
            return Check(self.id, "DATA", "PASS", f"ledger complete: {n:,} events")
        return Check(self.id, "DATA", "WARN", f"ledger incomplete: the run stopped before closing it (killed or "
                                              f"crashed); the checks cover the {n:,} events flushed before that")
