"""Weight changes the version counter does not count are still updates: the tracer watches ``.data`` aliases,
``.data`` assignments and raw memory of the tracked tensors (and views of them), and only those, so that checking
a model between scoring forwards needs no copy from the device for the rest."""

from __future__ import annotations

import json

import numpy as np

from harness.ledger import LOOK, UPDATE


def test_writes_past_the_version_counter_are_updates_and_a_look_alone_is_not(tmp_path, run_traced):
    led = run_traced("writes.py", tmp_path, np.random.default_rng(2).integers(2, 64, size=400).astype(np.uint16))
    expected = json.loads((tmp_path / "expected.json").read_text())
    kinds = led.events["kind"]
    looks = [(int(led.event_ranges(i)[0][0]) - 1, int(led.events["version"][i])) for i in np.flatnonzero(kinds == LOOK)]
    assert [s for s, _ in looks] == [s for s, _ in expected]
    moved = [b[1] != a[1] for a, b in zip(looks, looks[1:])]
    assert moved == [c for _, c in expected[1:]]
    assert int((kinds == UPDATE).sum()) == sum(c for _, c in expected)
