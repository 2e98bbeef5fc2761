"""Rows are cut into the stretches of the validation stream they are made of: an update reads every stretch, and a
stretch's last input predicts the stream's next token only when the loss says so (or cannot be seen)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.ledger import UPDATE

VAL = np.random.default_rng(1).integers(2, 64, size=400).astype(np.uint16)


@pytest.fixture(scope="module")
def index(tracer_module):
    return tracer_module("scorefirst_trace").WindowIndex(VAL)


def test_a_window_is_one_segment(index):
    assert index.segments(VAL[None, 50:90].astype(np.int64)).tolist() == [[0, 0, 50, 40]]


def test_concatenated_stretches_are_one_segment_each_and_padding_none(index):
    row = np.concatenate([VAL[100:140], VAL[300:340], np.zeros(12), VAL[10:30]]).astype(np.int64)
    assert index.segments(row[None]).tolist() == [[0, 0, 100, 40], [0, 40, 300, 40], [0, 92, 10, 20]]


def test_rows_shorter_than_a_k_gram_or_foreign_match_nothing(index):
    assert index.segments(np.ones((2, 7), np.int64)).shape == (0, 4)
    assert index.segments(np.ones((1, 50), np.int64)).shape == (0, 4)


@pytest.fixture(scope="module")
def updates(tmp_path_factory, run_traced):
    led = run_traced("segments.py", tmp_path_factory.mktemp("segments"), VAL)
    return [led.event_ranges(i).tolist() for i in np.flatnonzero(led.events["kind"] == UPDATE)]


def test_an_update_reads_every_concatenated_stretch_and_not_the_stream_after_the_first(updates):
    """Column 39 predicts the second stretch's first token, so 140 (the stream after the first) was not read."""
    assert updates[0] == [[100, 140], [300, 341]]


def test_a_masked_row_still_predicts_the_stream_after_its_last_valid_input(updates):
    assert updates[1] == [[200, 221]]


def test_without_targets_the_stream_continuation_is_assumed(updates):
    assert updates[2] == [[100, 141], [300, 341]]
