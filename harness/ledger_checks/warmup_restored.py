"""warmup-restored (C3, WARN): positions read before their score only by updates a restore fully reverted (the
PG-TTT-006 gray case: a warm-up on validation tokens with weights and optimizer state reset)."""

from __future__ import annotations

from audits.dynamic_result import Check, Violation
from harness.ledger_checks.base import Facts, First, LedgerCheck, TileView, restore_note, touched_note


class WarmupRestored(LedgerCheck):
    id = "warmup-restored"
    order = 60

    def __init__(self):
        self.warm = First()
        self.first: tuple[int, int, int] | None = None

    def accumulate(self, view: TileView) -> None:
        counted = view.scored & (view.first_update < view.first_score)  # a C3 violation already
        idx = self.warm.add(view.scored & ~counted & view.restored, view.lo)
        if idx.size and self.first is None:
            self.first = view.lo + int(idx[0]), int(view.first_score[idx[0]]), int(view.any_update[idx[0]])

    def verdict(self, f: Facts) -> Check | None:
        if not self.warm.n:
            return None
        p, s, u = self.first
        r = min(r for r in f.reverted if r < s)
        return Check(self.id, "C3", "WARN",
                     f"{self.warm.n:,} positions were read by updates before they were scored, but a restore "
                     f"returned every parameter those updates changed to its content before them, and no "
                     f"optimizer state carried them on, before the positions were scored: PG-TTT-006 (gray: a "
                     f"warm-up on validation tokens, accepted when weights and optimizer state are reset, "
                     f"#1530; synthetic warm-up tokens avoid the question)",
                     Violation(p, s, u, f"position {p}: read by the update at seq {u}{touched_note(f.ledger, u)}, "
                                        f"reverted by the restore at seq {r}{restore_note(f.ledger, r)}, first "
                                        f"scored at seq {s}"))
