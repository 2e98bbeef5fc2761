"""Which forwards fed an update is decided by the autograd graph a backward reaches; a forward whose graph was
dropped without a backward fed nothing, whatever later graph reuses its memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.ledger import LOOK, UPDATE


@pytest.fixture(scope="module")
def trace(tracer_module):
    return tracer_module("scorefirst_trace")


def test_a_node_key_is_stable_while_the_graph_lives_and_walked_keys_match_it(trace):
    w = torch.randn(4, requires_grad=True)
    logits = w * 2
    loss = logits.tanh().sum()
    key = trace._node(logits.grad_fn)
    assert trace._node(logits.grad_fn) == key
    nodes, leaves = trace.Tracer.walk(None, [loss])
    assert key in nodes and any(v is w for v in leaves)
    other = (w * 3).sum()
    assert key not in trace.Tracer.walk(None, [other])[0]


def test_a_freed_nodes_address_taken_by_a_new_node_is_not_the_same_key(trace):
    """CPython hands a freed object's memory to the next object of its size: the address alone would match."""

    class Node:
        def __init__(self, nr):
            self.nr = nr

        def _sequence_nr(self):
            return self.nr

    old = Node(5)
    stale, stale_id = trace._node(old), id(old)
    del old
    new = next((n for n in (Node(9) for _ in range(1000)) if id(n) == stale_id), None)
    assert new is not None, "no address reuse to test against"
    assert id(new) == stale[0] and trace._node(new) != stale


def test_a_dropped_graph_never_feeds_a_later_update(tmp_path, run_traced):
    led = run_traced("stale_graphs.py", tmp_path, np.random.default_rng(3).integers(2, 64, size=2000).astype(np.uint16))
    kinds = led.events["kind"]
    assert int((kinds == LOOK).sum()) == 300  # every dropped forward was seen as a look with gradients
    updates = np.flatnonzero(kinds == UPDATE)
    assert len(updates) == 300
    read = [i for i in updates if len(led.event_ranges(i))]
    assert read == [], f"{len(read)} updates charged with a dropped forward's positions"
