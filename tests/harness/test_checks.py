"""Checks on synthetic ledgers: each violation is named with its first offending position and the events involved."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.checks import Tolerance, build_timeline, check_ledger
from harness.ledger import Ledger, LedgerWriter
from harness.ledger_checks import discover

N = 101  # positions 0..100, targets 1..100
BYTES = np.r_[0, np.full(N - 1, 3)].astype(np.int16)


def _ledger(tmp_path, build, reported=None, close=True, begin=None):
    w = LedgerWriter(tmp_path / "l", positions=N)
    w.meta(event="begin", n_tokens=N, first_position=1, last_position=N - 1, **(begin or {}))
    total = build(w)
    if reported is None and total is not None:
        loss_sum, tokens, nbytes = total
        reported = {"val_loss": loss_sum / tokens, "val_bpb": loss_sum / (nbytes * math.log(2))}
    if reported is not None:
        w.meta(event="end", **reported)
    if close:
        w.close()
    else:
        w.flush()
    return Ledger(tmp_path / "l")


def _score_first(w, chunk=25, nll=1.0):
    """Score each chunk, then train on it (not the last)."""
    v = 0
    for a in range(1, N, chunk):
        b = min(a + chunk, N)
        w.score((a, b), np.full(b - a, nll), v)
        if b < N:
            v += 1
            w.update((a - 1, b), ["w"], v)
    return nll * (N - 1), N - 1, 3 * (N - 1)


def _verdicts(out):
    return {c.id: c.verdict for c in out.checks}


def test_legal_ledger_passes_everything(tmp_path):
    out = check_ledger(_ledger(tmp_path, _score_first), bytes_at=BYTES)
    assert set(_verdicts(out).values()) == {"PASS"}, _verdicts(out)
    assert out.reconstructed["val_loss"] == pytest.approx(1.0)
    assert out.reconstructed["val_bpb"] == pytest.approx(1 / (3 * math.log(2)))
    assert out.reconstructed["tokens"] == 100 and out.violations == []


def test_update_before_score_fails_c3_at_the_first_position(tmp_path):
    def build(w):
        w.update((0, 60), ["blocks.0.w"], 1)  # pre-eval TTT on the first 60 tokens
        w.score((1, N), np.ones(N - 1), 1)
        return 100.0, 100, 300
    out = check_ledger(_ledger(tmp_path, build), bytes_at=BYTES)
    c = out.by_id("score-before-update")
    assert c.verdict == "FAIL" and c.condition == "C3"
    assert "59 positions" in c.message
    fv = c.first_violation
    assert (fv.position, fv.update_seq, fv.score_seq) == (1, 1, 2)
    assert "blocks.0.w" in fv.detail
    assert out.violations[0] == (1, 2, 1) and len(out.violations) <= 200
    assert _verdicts(out)["scored-once"] == "PASS"


def test_rescoring_fails_c4_with_the_scores_and_the_update_between(tmp_path):
    def build(w):
        _score_first(w)
        w.score((1, N), np.full(N - 1, 0.5), 4)  # second pass after TTT; s_1 reported
        return None
    out = check_ledger(_ledger(tmp_path, build, reported={"val_loss": 0.5, "val_bpb": 0.5 / (3 * math.log(2))}),
                       bytes_at=BYTES)
    v = _verdicts(out)
    assert v["scored-once"] == "FAIL" and v["reported-loss"] == "FAIL" and v["score-before-update"] == "PASS"
    fv = out.by_id("scored-once").first_violation
    assert fv.position == 1 and fv.score_seq == 1 and fv.update_seq == 2
    assert "scored 2 times" in fv.detail and "updates read it in between" in fv.detail
    assert "differs from 1.000000" in out.by_id("reported-loss").message


def test_missing_positions_fail_count_and_coverage(tmp_path):
    def build(w):
        w.score((1, 40), np.ones(39), 0)
        w.score((60, N), np.ones(41), 0)
        return 80.0, 80, 240
    out = check_ledger(_ledger(tmp_path, build), bytes_at=BYTES)
    v = _verdicts(out)
    assert v["scored-count"] == "FAIL" and v["coverage"] == "FAIL"
    assert out.by_id("coverage").first_violation.position == 40
    assert "positions 40..59 never scored" in out.by_id("coverage").first_violation.detail
    assert "80 positions scored" in out.by_id("scored-count").message


def test_byte_count_error_fails_bytes_only(tmp_path):
    """The reported bpb implies 17% more bytes than the canonical table (the double-counted leading space)."""
    def build(w):
        w.score((1, N), np.ones(N - 1), 0)
        return None
    rep = {"val_loss": 1.0, "val_bpb": 100 / (1.17 * 300 * math.log(2))}
    out = check_ledger(_ledger(tmp_path, build, reported=rep), bytes_at=BYTES)
    v = _verdicts(out)
    assert v["reported-bpb"] == "FAIL" and v["reported-loss"] == "PASS"
    assert "351 bytes" in out.by_id("reported-bpb").message and "300" in out.by_id("reported-bpb").message


def test_printed_precision_widens_the_tolerance(tmp_path):
    def build(w):
        w.score((1, N), np.full(N - 1, 1.23456789), 0)
        return None
    led = _ledger(tmp_path, build, reported={"val_loss": 1.2346, "val_bpb": 1.23456789 / (3 * math.log(2))})
    assert _verdicts(check_ledger(led, bytes_at=BYTES))["reported-loss"] == "FAIL"
    assert _verdicts(check_ledger(led, bytes_at=BYTES, tol=Tolerance(1e-5, 1e-6, decimals=4)))["reported-loss"] == "PASS"


def test_incomplete_ledger_warns(tmp_path):
    out = check_ledger(_ledger(tmp_path, _score_first, close=False), bytes_at=BYTES)
    assert out.by_id("ledger-complete").verdict == "WARN"


def test_no_reported_result_and_no_bytes_warn(tmp_path):
    def build(w):
        w.score((1, N), np.ones(N - 1), 0)
        return None
    out = check_ledger(_ledger(tmp_path, build))
    assert out.by_id("reported-loss").verdict == "WARN" and out.by_id("reported-bpb").verdict == "WARN"


def test_per_document_adapters_are_scoped_to_their_document(tmp_path):
    """Document 1 starts at 50: its first input (position 50) is document 0's last target. Document 1's adapter
    reading it before document 0 scores it does not inform that score; document 0's own adapter would."""
    def build(w):
        w.score((51, 61), np.ones(10), 0)
        w.update((50, 61), ["lora/doc1"], 1)
        w.score((1, 51), np.ones(50), 1)
        w.score((61, N), np.ones(40), 1)
        return 100.0, 100, 300
    out = check_ledger(_ledger(tmp_path, build, begin={"state_scope": "per-document", "doc_starts": [0, 50]}),
                       bytes_at=BYTES)
    assert out.by_id("score-before-update").verdict == "PASS"
    assert "per-document" in out.by_id("score-before-update").message

    def build_bad(w):
        w.update((40, 51), ["lora/doc0"], 1)
        w.score((1, N), np.ones(100), 1)
        return 100.0, 100, 300
    (tmp_path / "b").mkdir()
    out = check_ledger(_ledger(tmp_path / "b", build_bad, begin={"state_scope": "per-document",
                                                                 "doc_starts": [0, 50]}), bytes_at=BYTES)
    c = out.by_id("score-before-update")
    assert c.verdict == "FAIL" and c.first_violation.position == 40 and "11 positions" in c.message


def test_timeline_is_capped_by_merging(tmp_path):
    def build(w):
        for p in range(1, N):
            w.score((p, p + 1), [1.0], 0)
        w.update((0, N), ["w"], 1)
        return 100.0, 100, 300
    led = _ledger(tmp_path, build)
    full = build_timeline(led, [])
    assert not full.downsampled and len(full.events) == 101
    capped = build_timeline(led, [], cap=20)
    assert capped.downsampled and len(capped.events) <= 21
    scores = [e for e in capped.events if e.kind == "score"]
    assert scores[0].start == 1 and scores[-1].stop == N and scores[0].seq == 1
    d = capped.to_dict()
    assert d["positions"] == N and d["max_seq"] == led.max_seq


def _traced(tmp_path, gap_kind):
    """A traced script: SCORE = first computation, LOOK = recomputation."""
    def build(w):
        w.score((1, N), np.ones(N - 1), 0)
        if gap_kind == "ttt":
            w.update((0, N), ["w"], 1)
            w.look((1, N), np.full(N - 1, 0.4), 1)
        return None
    rep = {"ttt": 0.4, "mix": 0.6, "none": 1.0}[gap_kind]
    return _ledger(tmp_path, build, reported={"val_loss": rep, "val_bpb": rep / (3 * math.log(2))})


def test_traced_reported_from_trained_state(tmp_path):
    out = check_ledger(_traced(tmp_path, "ttt"), bytes_at=BYTES, traced=True)
    v = _verdicts(out)
    assert v["reported-from-trained-state"] == "FAIL" and v["reported-loss"] == "FAIL"
    assert v["observed-distributions"] == "PASS" and v["score-before-update"] == "PASS"
    fv = out.by_id("reported-from-trained-state").first_violation
    assert (fv.position, fv.update_seq, fv.score_seq) == (1, 2, 3)
    assert out.reconstructed["last_look_val_loss"] == pytest.approx(0.4)


def test_traced_gap_without_training_is_a_c2_finding(tmp_path):
    out = check_ledger(_traced(tmp_path, "mix"), bytes_at=BYTES, traced=True)
    v = _verdicts(out)
    assert v["observed-distributions"] == "FAIL" and v["reported-from-trained-state"] == "PASS"
    assert v["reported-loss"] == "WARN" and "charged to C2" in out.by_id("reported-loss").message


def test_traced_without_gap_passes(tmp_path):
    out = check_ledger(_traced(tmp_path, "none"), bytes_at=BYTES, traced=True)
    assert set(_verdicts(out).values()) == {"PASS"}


def test_a_c3_failure_states_what_the_leak_is_worth(tmp_path):
    """Traced pre-eval TTT: the training forward looked at every position (NLL 2.0), the update read them, the
    reported pass scored them after it (NLL 1.0): reported 1/(3 ln2) bpb, first look 2/(3 ln2)."""
    from harness.ledger import FLAG_GRAD

    def build(w):
        w.look((1, N), np.full(N - 1, 2.0), 0, FLAG_GRAD)
        w.update((0, N), ["blocks.0.w"], 1)
        w.score((1, N), np.ones(N - 1), 1)
        return N - 1.0, N - 1, 3 * (N - 1)

    out = check_ledger(_ledger(tmp_path, build), bytes_at=BYTES, traced=True)
    c3 = next(c for c in out.checks if c.id == "score-before-update")
    rep, first = 1 / (3 * math.log(2)), 2 / (3 * math.log(2))
    assert c3.verdict == "FAIL" and c3.message.endswith(
        f"reported {rep:.4f} bpb; first-look {first:.4f} bpb: the leak is worth {first - rep:.4f} bpb")
    leak = out.reconstructed["leak"]
    assert leak["worth_bpb"] == pytest.approx(first - rep) and leak["first_look_loss"] == pytest.approx(2.0)


def test_a_leak_before_the_reported_evaluation_is_measured_from_the_earlier_predictions(tmp_path):
    """PR #1488's shape: an evaluation (NLL 2.0), pre-eval TTT reading every position, then the reported evaluation
    alone in its window (NLL 1.0). Inside the window there is nothing earlier to compare with; the earlier
    evaluation is, and the sentence says it came from another state."""
    from harness.ledger import FLAG_GRAD

    def build(w):
        w.look((1, N), np.full(N - 1, 2.0), 0)            # the diagnostic evaluation before the TTT
        w.look((1, N), np.full(N - 1, 2.0), 0, FLAG_GRAD)  # the TTT's training forward
        w.update((0, N), ["blocks.0.w"], 1)
        w.score((1, N), np.ones(N - 1), 1)                # the reported evaluation
        return N - 1.0, N - 1, 3 * (N - 1)

    led = _ledger(tmp_path, build)
    window = (int(led.events["seq"][-3]), int(led.events["seq"][-1]) + 1)  # the score and the end record
    out = check_ledger(led, bytes_at=BYTES, traced=True, look_window=window)
    c3 = next(c for c in out.checks if c.id == "score-before-update")
    rep, first = 1 / (3 * math.log(2)), 2 / (3 * math.log(2))
    assert c3.verdict == "FAIL" and "made before the reported evaluation by another state" in c3.message
    assert c3.message.endswith(f"{first:.4f} bpb: the leak is worth {first - rep:.4f} bpb")
    assert out.reconstructed["leak"]["worth_bpb"] == pytest.approx(first - rep)


def test_ambiguous_reads_before_the_score_warn_and_never_fail_c3(tmp_path):
    def build(w):
        w.update((0, 0), ["blocks.0.w"], 1)  # a training step whose validation-looking rows were ambiguous
        w.meta(event="ambiguous-read", version=1, positions=40, ranges=[[10, 50]], ranges_total=1)
        w.score((1, N), np.ones(N - 1), 1)
        return N - 1.0, N - 1, 3 * (N - 1)

    out = check_ledger(_ledger(tmp_path, build), bytes_at=BYTES)
    by = {c.id: c for c in out.checks}
    assert by["score-before-update"].verdict == "PASS"
    amb = by["ambiguous-provenance"]
    assert amb.verdict == "WARN" and amb.condition == "C3" and amb.first_violation.position == 10
    assert amb.message.startswith("40 positions were read by updates before their first score")


def test_a_document_bos_read_only_as_leading_context_is_named_not_counted(tmp_path):
    """Per-document batches (PR #1626's shape): document 2's rows start at its BOS (position 40), which document 1
    scores later as its last target. The tracer leaves that BOS out of the update and says so; a BOS read as a
    target before its score still fails."""
    def build(w):
        w.score((41, 60), np.ones(19), 0)             # document 2's first chunk, scored
        w.update((41, 60), ["lora.A", "lora.B"], 1)   # ... then trained on: its BOS only as context
        w.meta(event="boundary-context", version=1, positions=[40])
        w.score((1, 41), np.ones(40), 1)              # document 1, ending with that BOS
        w.score((60, N), np.ones(N - 60), 1)
        return N - 1.0, N - 1, 3 * (N - 1)

    c3 = {c.id: c for c in check_ledger(_ledger(tmp_path / "a", build), bytes_at=BYTES).checks}["score-before-update"]
    assert c3.verdict == "PASS" and "not counted: 1 document BOS tokens" in c3.message

    def as_target(w):
        w.score((41, 60), np.ones(19), 0)
        w.update((40, 60), ["lora.A", "lora.B"], 1)   # the BOS read as a target (or without the boundary rule)
        w.score((1, 41), np.ones(40), 1)
        w.score((60, N), np.ones(N - 60), 1)
        return N - 1.0, N - 1, 3 * (N - 1)

    c3 = {c.id: c for c in check_ledger(_ledger(tmp_path / "b", as_target), bytes_at=BYTES).checks}[
        "score-before-update"]
    assert c3.verdict == "FAIL" and c3.first_violation.position == 40 and "not counted" not in c3.message


def test_every_check_is_a_discovered_module_and_runs_in_order(tmp_path):
    """A check is found by its module in harness/ledger_checks/, and the checks speak in one fixed order (the
    order of the terminal, JSON and HTML tables)."""
    ids = [c.id for c in discover()]
    assert ids == ["ledger-complete", "scored-once", "scored-count", "coverage", "score-before-update",
                   "warmup-restored", "repeated-targets", "reported-loss", "reported-bpb",
                   "reported-from-trained-state", "observed-distributions", "ambiguous-provenance"]

    def build(w):
        w.score((1, N), np.ones(N - 1), 1)
        return (N - 1) * 1.0, N - 1, 3 * (N - 1)

    out = check_ledger(_ledger(tmp_path, build), bytes_at=BYTES)
    got = [c.id for c in out.checks]
    assert got == [i for i in ids if i in got] and "ledger-complete" in got and "reported-bpb" in got
