"""The tracer in a real process (no sandbox): every spelling of the vocabulary projection is seen and gives the
script's own NLL; probabilities taken out of torch flag the look; collectives become SYNC events; the device of
the predictions is recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.ledger import FLAG_EXPORT, LOOK, SYNC, Ledger


@pytest.fixture(scope="module")
def traced(tmp_path_factory, run_traced):
    work = tmp_path_factory.mktemp("spellings")
    led = run_traced("spellings.py", work, np.random.default_rng(0).integers(2, 64, size=400).astype(np.uint16))
    return led, json.loads((work / "expected.json").read_text())


def _looks(led: Ledger) -> dict[int, tuple[np.ndarray, int]]:
    out = {}
    for i in np.flatnonzero(led.events["kind"] == LOOK):
        (a, b), = led.event_ranges(i)
        e = led.events[i]
        out[int(a)] = (np.asarray(led.nll[e["nll_off"] : e["nll_off"] + e["npos"]]), int(e["flags"]))
    return out


def test_every_spelling_of_the_projection_is_a_look_with_the_scripts_nll(traced):
    led, expected = traced
    looks = _looks(led)
    assert len(looks) == len(expected)  # the training batch (not validation tokens) made none
    for name, (start, nll) in expected.items():
        assert start in looks, name
        got, _ = looks[start]
        np.testing.assert_allclose(got, nll, rtol=0, atol=1e-5, err_msg=name)


def test_probabilities_taken_out_of_torch_flag_their_look(traced):
    led, expected = traced
    looks = _looks(led)
    flagged = {s for s, (_, flags) in looks.items() if flags & FLAG_EXPORT}
    assert flagged == {expected["exported"][0]}


def test_collectives_are_counted_and_the_device_recorded(traced):
    led, _ = traced
    kinds = list(led.events["kind"])
    sync = kinds.index(SYNC)
    assert int(led.events["version"][sync]) == 1 and kinds[sync + 1] == LOOK  # written before the next event
    devices = [m for m in led.metas if m.get("event") == "device"]
    assert len(devices) == 1 and devices[0]["device"] == "cpu" and devices[0]["name"] is None
