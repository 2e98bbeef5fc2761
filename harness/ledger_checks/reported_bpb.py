"""reported-bpb (BYTES): the bytes the reported (val_loss, val_bpb) pair implies match the canonical byte table."""

from __future__ import annotations

from audits.dynamic_result import Check
from harness.ledger_checks.base import Facts, LedgerCheck


class ReportedBpb(LedgerCheck):
    id = "reported-bpb"
    order = 90

    def verdict(self, f: Facts) -> Check:
        _, tokens, nbytes = f.counted
        rep_loss, rep_bpb, rec_bpb = f.rep_loss, f.rep_bpb, f.rec_bpb
        if f.bytes_at is None:
            return Check(self.id, "BYTES", "WARN", "no byte table: bpb not reconstructed")
        if rep_bpb is None or rep_loss is None or not tokens or not rep_bpb:
            return Check(self.id, "BYTES", "WARN", "no reported val_bpb to compare"
                         + (f"; reconstructed val_bpb {rec_bpb:.6f}" if rec_bpb is not None else ""))
        implied, rel, ok = f.tol.implied_bytes(rep_loss, rep_bpb, tokens, nbytes)
        msg = (f"reported val_bpb {rep_bpb:.6f}, reconstructed {rec_bpb:.6f}; the reported pair implies "
               f"{implied:,.0f} bytes, the canonical byte table gives {nbytes:,}"
               + (" (counting the repeats)" if tokens != f.tokens else ""))
        return Check(self.id, "BYTES", "PASS" if ok else "FAIL", msg + ("" if ok else f" (rel. diff {rel:+.2e})"))
