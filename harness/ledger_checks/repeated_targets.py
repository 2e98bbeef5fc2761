"""repeated-targets (DATA, WARN): the reported mean counts some targets more than once, each from the state that
first scored it (a sliding window's re-scored tail): nothing leaks, but it is not the once-per-target mean."""

from __future__ import annotations

import numpy as np

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import LN2, Facts, LedgerCheck


class RepeatedTargets(LedgerCheck):
    id = "repeated-targets"
    order = 70

    def verdict(self, f: Facts) -> Check | None:
        if not f.has_repeats:
            return None
        rp = np.asarray(f.repeats[0], dtype=np.int64)
        counted_loss, counted_tokens, counted_bytes = f.counted
        uniq = np.unique(rp)
        what = (f"{rp.size:,} repeated predictions of the split's last {uniq.size:,} targets ({int(uniq.min())}.."
                f"{int(uniq.max())}), each from the state that first scored it, by windows running past the split's "
                f"end, are counted in the reported mean")
        if f.bytes_at is not None and f.nbytes and counted_bytes:
            once, counted = f.loss_sum / (f.nbytes * LN2), counted_loss / (counted_bytes * LN2)
            effect = f"{counted:.4f} bpb as counted, {once:.4f} bpb with every target once ({counted - once:+.4f} bpb)"
        else:
            once, counted = f.loss_sum / f.tokens, counted_loss / counted_tokens
            effect = f"{counted:.4f} nats/token as counted, {once:.4f} with every target once ({counted - once:+.4f})"
        return Check(self.id, "DATA", "WARN",
                     f"{what}: no information reaches them (C3, C4 unaffected), but the score is not the canonical "
                     f"once-per-target mean: {effect}",
                     Violation(int(uniq.min()), None, None, f"positions {int(uniq.min())}..{int(uniq.max())} counted "
                                                            f"{rp.size / uniq.size + 1:.0f} times on average"))
