"""ambiguous-provenance (C3, WARN): positions an update read before their first score through token ids whose
origin the tracer lost, and whose window occurs in the training shards too: never counted as a C3 violation."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger import NONE
from harness.ledger_checks.base import Facts, LedgerCheck, meta_ranges, read_before_scored


class AmbiguousProvenance(LedgerCheck):
    id = "ambiguous-provenance"
    order = 120

    def verdict(self, f: Facts) -> Check | None:
        n_before, first = read_before_scored(f, meta_ranges(f.ledger, "ambiguous-read", "ranges"), unscored=True)
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
