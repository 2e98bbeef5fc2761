"""ambiguous-provenance (C3, WARN): positions an update read before their first score through token ids whose
origin the tracer lost, and whose window occurs in the training shards too: never counted as a C3 violation."""

from __future__ import annotations

import numpy as np

from audits.dynamic_result import Check, Violation
from harness.ledger import NONE, KindRanges, Ledger, first_seqs
from harness.ledger_checks.base import Facts, LedgerCheck


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


class AmbiguousProvenance(LedgerCheck):
    id = "ambiguous-provenance"
    order = 120

    def verdict(self, f: Facts) -> Check | None:
        amb = ambiguous_reads(f.ledger)
        if not len(amb):
            return None
        n_before, first = 0, None
        lo, hi = int(amb.start.min()), int(amb.stop.max())
        for a in range(lo, hi, f.tile):
            b = min(a + f.tile, hi)
            fa, fs = first_seqs(amb, a, b), first_seqs(f.scores, a, b)
            bad = np.flatnonzero((fa != NONE) & (fa < fs))
            n_before += int(bad.size)
            if bad.size and first is None:
                first = (a + int(bad[0]), int(fs[bad[0]]), int(fa[bad[0]]))
        if first is None:
            return None
        p, s, u = first
        return Check(self.id, "C3", "WARN",
                     f"{n_before:,} positions were read by updates before their first score through token ids whose "
                     f"origin the tracer lost (not read from a shard it could follow), and whose text occurs in the "
                     f"training shards as well as in validation: training on them cannot be told from training on "
                     f"the same text in the training split, so this is not counted as a C3 violation; the static "
                     f"audit, or a run whose data loader keeps the ids' origin visible, decides",
                     Violation(p, None if s == NONE else s, u,
                               f"position {p}: ambiguous read at seq {u}, "
                               + ("never scored" if s == NONE else f"first scored at seq {s}")))
