"""The ledger: append-only columns, ranges, crash safety, per-position tables, rank merging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness.ledger import (LOOK, META, NONE, SCORE, SYNC, UPDATE, Ledger, LedgerError, LedgerObserver,
                            LedgerWriter, Ranges, iter_tiles, merge, to_ranges)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_to_ranges_run_length_encodes_in_order():
    assert to_ranges((3, 7)).tolist() == [[3, 7]]
    assert to_ranges((5, 5)).shape == (0, 2)
    assert to_ranges(np.array([4, 5, 6, 1, 2, 9])).tolist() == [[4, 7], [1, 3], [9, 10]]
    assert to_ranges(Ranges([[1, 2], [8, 9]])).tolist() == [[1, 2], [8, 9]]
    assert to_ranges([]).shape == (0, 2)
    assert to_ranges(np.arange(10, 20)).tolist() == [[10, 20]]  # one run: the fast path
    assert to_ranges(np.array([7])).tolist() == [[7, 8]]
    assert to_ranges(np.array([3, 2])).tolist() == [[3, 4], [2, 3]]  # descending is not one run


def test_event_sizes_add_up_for_single_and_multi_range_events(tmp_path):
    w = LedgerWriter(tmp_path / "l", positions=100)
    w.score(np.arange(10, 20), np.zeros(10), 0)
    w.score(np.array([1, 2, 5]), np.zeros(3), 0)
    w.update((0, 40), ["w"], 1)
    w.close()
    assert Ledger(tmp_path / "l").events["npos"].tolist() == [10, 3, 40]


def test_roundtrip_events_meta_and_touched(tmp_path):
    with LedgerWriter(tmp_path / "l", positions=12, meta={"who": "test"}) as w:
        assert w.meta(event="begin", n_tokens=12) == 0
        assert w.score((1, 4), [0.5, 1.5, 2.5], 0) == 1
        assert w.update(np.array([0, 1, 2, 3]), ["a", "b"], 1) == 2
        assert w.look(np.array([7, 5, 6]), np.array([7.0, 5.0, 6.0]), 1) == 3
        assert w.update((4, 6), ["a", "b"], 2) == 4
        w.meta(event="end", val_loss=1.5)
    led = Ledger(tmp_path / "l")
    assert led.complete and led.positions == 12 and led.header["meta"] == {"who": "test"}
    assert led.events["kind"].tolist() == [META, SCORE, UPDATE, LOOK, UPDATE, META]
    assert led.events["seq"].tolist() == list(range(6))
    assert led.event_ranges(3).tolist() == [[7, 8], [5, 7]]
    assert np.asarray(led.nll).tolist() == [0.5, 1.5, 2.5, 7.0, 5.0, 6.0]
    assert led.touched == [("a", "b")] and led.event_touched(4) == ("a", "b")
    assert led.end["val_loss"] == 1.5 and led.begin["n_tokens"] == 12
    assert led.summary() == {"positions": 12, "events": 6, "score_events": 1, "update_events": 2, "complete": True,
                             "path": str(tmp_path / "l")}
    looks = led.kind_ranges(LOOK)
    assert looks.start.tolist() == [7, 5] and looks.nll_at.tolist() == [3, 4]


def test_nll_count_must_match_positions(tmp_path):
    w = LedgerWriter(tmp_path / "l", positions=10)
    with pytest.raises(ValueError):
        w.score((1, 4), [1.0, 2.0], 0)


def test_append_only_refuses_an_existing_ledger(tmp_path):
    LedgerWriter(tmp_path / "l", positions=4).close()
    with pytest.raises(LedgerError):
        LedgerWriter(tmp_path / "l", positions=4)
    with pytest.raises(LedgerError):
        Ledger(tmp_path / "nothing")


def test_buffer_is_bounded_and_flushed(tmp_path):
    w = LedgerWriter(tmp_path / "l", positions=10_000, flush_positions=100, flush_seconds=3600)
    for i in range(50):
        w.score((1 + 10 * i, 11 + 10 * i), np.zeros(10), 0)
        assert w._pending_pos < 100
    assert json.loads((tmp_path / "l" / "commit.json").read_text())["nll"] >= 400
    w.close()


def test_killed_writer_leaves_a_readable_incomplete_ledger(tmp_path):
    """A process killed mid-run: everything flushed before stays readable, the tail is ignored, complete=False."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        import numpy as np
        from harness.ledger import LedgerWriter
        w = LedgerWriter({str(tmp_path / 'l')!r}, positions=1000, flush_positions=10**9, flush_seconds=3600)
        w.meta(event="begin", n_tokens=1000)            # meta flushes
        for i in range(10):
            w.score((1 + 10 * i, 11 + 10 * i), np.full(10, float(i)), 0)
        w.flush()
        w.score((200, 300), np.zeros(100), 0)           # buffered only: lost with the process
        w._fh["nll"].write(b"garbage past the commit")  # a torn write
        w._fh["nll"].flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    led = Ledger(tmp_path / "l")
    assert not led.complete
    assert led.count(SCORE) == 10 and led.nll.size == 100 and led.begin["n_tokens"] == 1000
    assert float(led.nll[-1]) == 9.0


def _brute(events, n):
    """Per-position tables by the definition."""
    count = np.zeros(n, int)
    first = np.full(n, NONE)
    first_nll = np.full(n, np.nan)
    upd = np.full(n, NONE)
    for seq, kind, pos, nll in events:
        for j, p in enumerate(pos):
            if kind == SCORE:
                count[p] += 1
                if first[p] == NONE:
                    first[p], first_nll[p] = seq, nll[j]
            elif kind == UPDATE and upd[p] == NONE:
                upd[p] = seq
    return count, first, first_nll, upd


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tile", [7, 64, 1 << 20])
def test_tiles_match_the_definition(tmp_path, seed, tile):
    rng = np.random.default_rng(seed)
    n = 150
    events = []
    w = LedgerWriter(tmp_path / "l", positions=n, flush_positions=37)
    for _ in range(60):
        kind = SCORE if rng.random() < 0.6 else UPDATE
        if rng.random() < 0.5:
            a = int(rng.integers(0, n - 1))
            pos = np.arange(a, int(rng.integers(a + 1, min(n, a + 30) + 1)))
        else:
            pos = rng.choice(n, size=int(rng.integers(1, 20)), replace=True)
        nll = rng.random(pos.size).astype(np.float32)
        seq = w.score(pos, nll, 0) if kind == SCORE else w.update(pos, ["p"], 1)
        events.append((seq, kind, pos, nll))
    w.close()
    led = Ledger(tmp_path / "l")
    count, first, first_nll, upd = _brute(events, n)
    tiles = list(iter_tiles(led, tile=tile))
    assert np.array_equal(np.concatenate([t.count for t in tiles]), count)
    assert np.array_equal(np.concatenate([t.first_score for t in tiles]), first)
    assert np.array_equal(np.concatenate([t.first_update for t in tiles]), upd)
    got = np.concatenate([t.first_nll for t in tiles])
    assert np.array_equal(np.isnan(got), np.isnan(first_nll))
    assert np.allclose(got[~np.isnan(got)], first_nll[~np.isnan(first_nll)])


def _rank_ledger(path, rank, scores, updates):
    """scores: list of (start, stop) per segment; updates between segments."""
    w = LedgerWriter(path, positions=100, rank=rank)
    w.meta(event="begin", n_tokens=100)
    for k, (a, b) in enumerate(scores):
        w.score((a, b), np.full(b - a, float(rank)), k)
        if k < len(updates):
            w.update(updates[k], [f"w{rank}"], k + 1)
    w.meta(event="end")
    w.close()
    return path


def test_merge_collective_unions_the_kth_updates(tmp_path):
    """DDP-style TTT: rank r scores its chunk, all ranks step together on all-reduced gradients."""
    r0 = _rank_ledger(tmp_path / "r0", 0, [(1, 11), (21, 31)], [(0, 11)])
    r1 = _rank_ledger(tmp_path / "r1", 1, [(11, 21), (31, 41)], [(10, 21)])
    info = merge([r0, r1], tmp_path / "m")
    assert info["mode"] == "collective" and info["complete"]
    led = Ledger(tmp_path / "m")
    kinds = [int(k) for k in led.events["kind"] if k != META]
    assert kinds == [SCORE, SCORE, UPDATE, SYNC, SCORE, SCORE]  # SYNC: the ranks' scores after it were concurrent
    upd = int(np.flatnonzero(led.events["kind"] == UPDATE)[0])
    assert led.event_ranges(upd).tolist() == [[0, 11], [10, 21]]
    assert set(led.event_touched(upd)) == {"w0", "w1"}
    # a score made after the merged update was made by global state 1
    later = np.flatnonzero(led.events["kind"] == SCORE)[2:]
    assert all(led.events["seq"][i] > led.events["seq"][upd] for i in later)
    assert led.events["rank"][later].tolist() == [0, 1]


def test_merge_independent_keeps_each_ranks_order(tmp_path):
    r0 = _rank_ledger(tmp_path / "r0", 0, [(1, 11), (21, 31)], [(0, 11)])
    r1 = _rank_ledger(tmp_path / "r1", 1, [(11, 21)], [])
    info = merge([r0, r1], tmp_path / "m")  # different update counts: auto picks independent
    assert info["mode"] == "independent"
    led = Ledger(tmp_path / "m")
    seq_of = {tuple(led.event_ranges(i)[0]): int(led.events["seq"][i])
              for i in range(len(led.events)) if led.events["kind"][i] == SCORE}
    assert seq_of[(1, 11)] < seq_of[(21, 31)] < seq_of[(11, 21)]
    with pytest.raises(LedgerError):
        merge([r0, r1], tmp_path / "m2", mode="collective")


def test_merge_of_an_incomplete_rank_is_incomplete(tmp_path):
    r0 = _rank_ledger(tmp_path / "r0", 0, [(1, 11)], [])
    w = LedgerWriter(tmp_path / "r1", positions=100, rank=1)
    w.score((11, 21), np.zeros(10), 0)
    w.flush()  # never closed
    assert merge([r0, tmp_path / "r1"], tmp_path / "m")["complete"] is False
    assert not Ledger(tmp_path / "m").complete


def test_observer_writes_scores_updates_and_the_reported_result(tmp_path):
    torch = pytest.importorskip("torch")
    obs = LedgerObserver(LedgerWriter(tmp_path / "l", positions=20), sync_every=2)
    obs.on_meta(event="begin", n_tokens=20, first_position=1, last_position=19)
    obs.on_score((1, 5), torch.arange(4.0), 0)
    obs.on_score(torch.tensor([5, 6]), torch.tensor([1.0, 2.0]), 0)
    obs.on_update(torch.tensor([0, 1, 2, 3, 4, 5, 6]), ["lora/doc0"], 1)
    obs.on_score((7, 20), torch.zeros(13), 1)
    obs.on_meta(event="end", val_loss=0.5, val_bpb=0.7, loss_sum=9.0, tokens=19, bytes=40, updates=1)
    obs.close()
    led = Ledger(tmp_path / "l")
    assert [int(k) for k in led.events["kind"]] == [META, SCORE, SCORE, UPDATE, SCORE, META]
    assert obs.reported["val_loss"] == 0.5 and led.end["tokens"] == 19
    assert led.event_ranges(3).tolist() == [[0, 7]]


def test_sync_events_are_written_lazily_and_order_the_merge(tmp_path):
    """A burst of collectives is one SYNC before the next event; rank 1's score made before an all-reduce comes
    before rank 0's score made after it, although rank 0 sorts first otherwise."""
    w0 = LedgerWriter(tmp_path / "r0", positions=50, rank=0)
    w0.collective()
    w0.collective()
    w0.score((1, 11), np.zeros(10), 0)
    w0.close()
    w1 = LedgerWriter(tmp_path / "r1", positions=50, rank=1)
    w1.score((11, 21), np.zeros(10), 0)
    w1.collective()
    w1.collective()
    w1.close()
    r0 = Ledger(tmp_path / "r0")
    assert [int(k) for k in r0.events["kind"]] == [SYNC, SCORE] and int(r0.events["version"][0]) == 2
    assert Ledger(tmp_path / "r1").count(SYNC) == 0  # nothing followed rank 1's collectives
    merge([tmp_path / "r0", tmp_path / "r1"], tmp_path / "m")
    m = Ledger(tmp_path / "m")
    scores = np.flatnonzero(m.events["kind"] == SCORE)
    assert [int(m.events["rank"][i]) for i in scores] == [1, 0]
