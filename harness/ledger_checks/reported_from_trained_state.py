"""reported-from-trained-state (C3, traced scripts): the computations the reported score sums were not made by a
state trained on their tokens: a gap between the reported score and the first computations, with positions
predicted again after an update that read them, is a re-score after training."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import Facts, LedgerCheck, first_seq


class ReportedFromTrainedState(LedgerCheck):
    id = "reported-from-trained-state"
    order = 100

    def verdict(self, f: Facts) -> Check | None:
        if not f.traced:
            return None
        gap, relook = f.gap, f.relook
        if gap is None or abs(gap) <= f.tol.loss():
            return Check(self.id, "C3", "PASS", "the reported score equals the first computations; later "
                                                f"recomputations ({relook.n:,} positions predicted again after an "
                                                f"update read them) are not reported"
                         if relook.n else "the reported score equals the first computations")
        if not relook.n:
            return Check(self.id, "C3", "PASS", "no position was predicted again after an update that read it")
        p, s, u = f.relook_first
        return Check(self.id, "C3", "FAIL",
                     f"the reported score is {'below' if gap < 0 else 'above'} the first computations by "
                     f"{abs(gap):.4f} nats/token and {relook.n:,} positions were predicted again after an "
                     f"update that read them: the reported score came from a state trained on the scored tokens",
                     Violation(p, s, u, f"position {p}: first scored at seq {first_seq(f.scores, p)}, read by "
                                        f"the update at seq {u}, predicted again at seq {s}"))
