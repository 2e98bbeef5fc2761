"""reported-loss (C4): the reported val_loss is the mean of each position's first score (or, traced, its first
prediction), counting the repeats the reported mean counts."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import Facts, LedgerCheck, first_seq


class ReportedLoss(LedgerCheck):
    id = "reported-loss"
    order = 80

    def verdict(self, f: Facts) -> Check:
        rep_loss, rec_loss, gap = f.rep_loss, f.rec_loss, f.gap
        if gap is None:
            return Check(self.id, "C4", "WARN", "no reported val_loss to compare with the ledger"
                         if rep_loss is None else "nothing was scored")
        lim = f.tol.loss()
        what = "the first computation of each position's prediction" if f.traced else "the first score of each position"
        repeats = f.counted[1] - f.tokens
        if repeats:
            what += f" and the {repeats:,} repeats it counts"
        if abs(gap) <= lim:
            return Check(self.id, "C4", "PASS", f"reported val_loss {rep_loss:.6f} = {rec_loss:.6f} from {what} "
                                                f"(|diff| {abs(gap):.2e} <= {lim:.1e})")
        fv = None
        if f.traced and f.relook_first is not None:
            p, s, u = f.relook_first
            fv = Violation(p, s, u, f"position {p}: first scored at seq {first_seq(f.scores, p)}, trained on at seq "
                                    f"{u}, predicted again at seq {s}")
        msg = (f"reported val_loss {rep_loss:.6f} differs from {rec_loss:.6f}, the sum of {what} "
               f"(diff {gap:+.6f} > {lim:.1e})")
        if f.traced and f.relook.n == 0:
            # nothing was recomputed after training on it: the gap is in the distributions, not the pass (C2)
            return Check(self.id, "C4", "WARN", msg + "; no position was scored again after training on it, so "
                                                      "the gap is charged to C2 (observed-distributions)")
        last = f.last_look_loss
        return Check(self.id, "C4", "FAIL", msg + ": the reported score is not the first-pass score"
                     + (f"; the last computations give {last:.6f}" if last is not None else ""), fv)
