"""Which computations were the reported evaluation: the reading of a traced run that reproduces the reported pair."""

from __future__ import annotations

import math

import numpy as np

from harness.checks import SCRIPT_TOLERANCE, Tolerance, check_ledger
from harness.derive import derive
from harness.ledger import Ledger, LedgerWriter, Ranges

N = 1001          # targets 1..1000
STRIDE = 10
BYTES = np.r_[0, np.full(N - 11, 3), np.full(10, 10)].astype(np.int16)  # the last targets are long pieces


def _raw(path, tail_rows: int, counted: bool = True):
    """A sliding-window scorer: rows of STRIDE new targets, then ``tail_rows`` windows running past the end that
    score the last STRIDE targets again (PR #473's window list). Every prediction has NLL 1, so the repeats leave
    the loss where it is and move only the bytes per token. The reported pair counts the repeats if ``counted``."""
    w = LedgerWriter(path, positions=N)
    for a in range(1, N, STRIDE):
        w.look(Ranges([[max(1, a - 20), a + STRIDE]]), np.ones(a + STRIDE - max(1, a - 20)), 0)
    for _ in range(tail_rows):
        w.look(Ranges([[N - 30, N]]), np.ones(30), 0)
    again = tail_rows if counted else 0
    tokens = (N - 1) + again * STRIDE
    nbytes = int(BYTES.sum()) + again * int(BYTES[-STRIDE:].sum())
    loss, bpb = 1.0, tokens / (nbytes * math.log(2))
    w.meta(event="report", val_loss=loss, val_bpb=round(bpb, 8), decimals=8,
           line=f"legal_ttt_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
    w.close()
    return Ledger(path)


def _bytes_check(d, tmp_path):
    tol = Tolerance(SCRIPT_TOLERANCE.loss_abs, SCRIPT_TOLERANCE.bytes_rel, d.reported.get("decimals"))
    out = check_ledger(Ledger(d.path), bytes_at=BYTES, reported=d.reported, tol=tol, traced=True,
                       look_window=d.window, repeats=d.repeats)
    return {c.id: c for c in out.checks}["reported-bpb"]


def test_tail_repeats_that_leave_the_loss_unchanged_are_found_by_the_bytes(tmp_path):
    d = derive(_raw(tmp_path / "raw", tail_rows=3), tmp_path / "d", bytes_at=BYTES)
    assert d.repeats[0].size == 3 * STRIDE and set(d.repeats[0].tolist()) == set(range(N - STRIDE, N))
    assert any("counts the split's last targets again" in n for n in d.notes)
    c = _bytes_check(d, tmp_path)
    assert c.verdict == "PASS" and "(counting the repeats)" in c.message


def test_without_the_byte_table_the_loss_alone_cannot_tell_and_the_repeats_are_not_counted(tmp_path):
    d = derive(_raw(tmp_path / "raw", tail_rows=3), tmp_path / "d")
    assert d.repeats[0].size == 0
    assert _bytes_check(d, tmp_path).verdict == "FAIL"  # what PR #473's first GPU run reported


def test_a_scorer_that_does_not_count_its_repeats_is_read_without_them(tmp_path):
    raw = _raw(tmp_path / "raw", tail_rows=3, counted=False)
    d = derive(raw, tmp_path / "d", bytes_at=BYTES)
    assert d.repeats[0].size == 0 and _bytes_check(d, tmp_path).verdict == "PASS"
