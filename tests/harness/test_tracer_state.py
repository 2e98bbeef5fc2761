"""The state lineage behind restore detection (harness/tracer/scorefirst_state.py): a return of every changed
tensor to its checkpointed content is a restore to that version; anything short of it is not."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from harness.tracer import TRACER_DIR  # noqa: E402

sys.path.insert(0, str(TRACER_DIR))
from scorefirst_state import Lineage, fingerprints  # noqa: E402


def test_fingerprints_tell_content_apart_and_ignore_identity():
    """Same bits, same fingerprint; one ulp or one element more, another (a tensor keeps its dtype in place)."""
    a = torch.randn(1000)
    b = a.clone()
    c = a.clone()
    c[517] = torch.nextafter(c[517], torch.tensor(float("inf")))  # one ulp of one element
    fa, fb, fc = fingerprints(torch, [a, b, c])
    assert fa == fb and fa != fc
    assert fingerprints(torch, [a[:10]]) != fingerprints(torch, [a[:11]])
    assert fingerprints(torch, [torch.zeros(5)]) != fingerprints(torch, [torch.zeros(6)])
    half = a[:16].to(torch.bfloat16)
    assert fingerprints(torch, [half]) != fingerprints(torch, [half + 1])


def _trained():
    """Version 0 checkpointed; versions 1 and 2: updates of w (reading validation tokens)."""
    w, v = torch.nn.Parameter(torch.randn(8)), torch.nn.Parameter(torch.randn(4))
    lin = Lineage()
    tensors = {id(w): w, id(v): v}
    lin.checkpoint(torch, 0, tensors)
    saved = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    v1 = lin.new_version(0, True, [id(w)])
    with torch.no_grad():
        w.mul_(0.5)
    v2 = lin.new_version(v1, True, [id(w)])
    return lin, w, v, saved, tensors, {v1, v2}


def test_copying_the_saved_weights_back_is_a_restore_to_the_checkpoint():
    lin, w, v, saved, tensors, val_updates = _trained()
    with torch.no_grad():
        w.copy_(saved)
    assert lin.find_restore(torch, 2, {id(w): w}, tensors, val_updates) == (0, [2, 1])


def test_a_partial_or_different_state_is_no_restore():
    lin, w, v, saved, tensors, val_updates = _trained()
    with torch.no_grad():
        w.copy_(saved)
        w[0] += 1e-3
    assert lin.find_restore(torch, 2, {id(w): w}, tensors, val_updates) is None
    with torch.no_grad():
        w.copy_(saved)
    lora = torch.nn.Parameter(torch.zeros(3))  # trained since the checkpoint, not in it: the state is not version 0
    lin.touched[2].add(id(lora))
    assert lin.find_restore(torch, 2, {id(w): w}, {**tensors, id(lora): lora}, val_updates) is None
    assert lin.find_restore(torch, 2, {id(w): w}, tensors, set()) is None  # nothing worth reverting
