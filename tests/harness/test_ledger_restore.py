"""Checks on a ledger with a restore record: updates the restore reverted count against a position only if it was
scored before the restore; what they read and was scored after it is the gray PG-TTT-006 case (WARN)."""

from __future__ import annotations

import numpy as np

from harness.checks import check_ledger
from harness.ledger import Ledger, LedgerWriter


def _ledger(path, score_between: bool):
    """A warm-up update reading 60..99 (version 1), a restore reverting it, then everything scored."""
    w = LedgerWriter(path, positions=100)
    w.meta(event="begin", n_tokens=100, first_position=1, last_position=99)
    w.update((60, 100), ["SGD.step", "w"], 1)
    if score_between:
        w.score((90, 100), np.ones(10), 1)
    w.meta(event="restore", to_version=0, from_version=1, version=2, reverted=[1], names=["w"])
    w.score((1, 90) if score_between else (1, 100), np.ones(89 if score_between else 99), 2)
    w.update((0, 50), ["SGD.step", "w"], 3)  # legal TTT after the restore
    w.meta(event="end", val_loss=1.0)
    w.close()
    return Ledger(path)


def test_what_was_scored_after_the_restore_is_the_gray_warmup_case(tmp_path):
    out = check_ledger(_ledger(tmp_path / "l", score_between=False))
    c3 = out.by_id("score-before-update")
    warm = out.by_id("warmup-restored")
    assert c3.verdict == "PASS" and "restore reverted" in c3.message
    assert warm.verdict == "WARN" and warm.condition == "C3" and "PG-TTT-006" in warm.message
    fv = warm.first_violation
    assert (fv.position, fv.update_seq) == (60, 1) and "state back to version 0: w" in fv.detail


def test_what_was_scored_before_the_restore_is_still_a_c3_failure(tmp_path):
    out = check_ledger(_ledger(tmp_path / "l", score_between=True))
    c3 = out.by_id("score-before-update")
    assert c3.verdict == "FAIL" and (c3.first_violation.position, c3.first_violation.update_seq) == (90, 1)
    assert out.stats["c3"] == 10 and out.by_id("warmup-restored").verdict == "WARN"  # 60..89: scored after it


def test_without_a_restore_record_the_same_updates_fail_c3(tmp_path):
    w = LedgerWriter(tmp_path / "l", positions=100)
    w.meta(event="begin", n_tokens=100, first_position=1, last_position=99)
    w.update((60, 100), ["SGD.step", "w"], 1)
    w.score((1, 100), np.ones(99), 1)
    w.close()
    out = check_ledger(Ledger(tmp_path / "l"))
    assert out.by_id("score-before-update").verdict == "FAIL" and out.stats["c3"] == 40
    assert not any(c.id == "warmup-restored" for c in out.checks)
