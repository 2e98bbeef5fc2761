"""Lagged score-first TTT: the loop trains on the previous, already scored chunk, then scores the current one.

The whole-script fixtures (`legal_score_first_lagged_prev_chunk.py`, `ttt_lagged_prev_assigned_early.py`) pin
the main spelling; these small programs cover the other spellings and the look-alikes that must stay PG-TTT-001.
"""
from __future__ import annotations

import pytest

from audits.engine import audit_source
from audits.source import SourceFile
from audits.types import Status

PROGRAM = '''\
import torch
import numpy as np


def load_val():
    return torch.from_numpy(np.fromfile("fineweb_val_000000.bin", dtype=np.uint16).astype(np.int64))


def train_on(model, opt, toks, epochs):
    for _ in range(epochs):
        loss = model(toks[:-1], toks[1:])
        loss.backward()
        opt.step()
        opt.zero_grad()


def eval_ttt(model, val_tokens, C, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n_chunks = (val_tokens.numel() - 1) // C
    chunks = [val_tokens[k * C:(k + 1) * C + 1] for k in range(n_chunks)]
    nll_sum = 0.0
    prev = @@INIT@@
    for i in range(n_chunks):
        chunk = val_tokens[i * C:(i + 1) * C + 1]
@@BODY@@
    val_loss = nll_sum / (n_chunks * C)
    print(f"val_loss:{val_loss:.4f}")
    return val_loss


def main():
    model = torch.nn.Linear(4, 4)
    eval_ttt(model, load_val(), 1024, 3)


main()
'''
STEP_LINE = 13  # `opt.step()` in train_on (the inline spelling steps at its own line)
SCORE = '''\
        with torch.no_grad():
            nll_sum += model(chunk[:-1], chunk[1:], reduction="sum")'''

CASES = {
    # legal: the data that feeds the step was scored in an earlier iteration
    "prev_after_score": ("None", "        if prev is not None:\n            train_on(model, opt, prev, epochs)\n"
                         + SCORE + "\n        prev = chunk", False),
    "prev_inline": ("None", "        if prev is not None:\n            for _ in range(epochs):\n"
                    "                loss = model(prev[:-1], prev[1:]); loss.backward(); opt.step(); opt.zero_grad()\n"
                    + SCORE + "\n        prev = chunk", False),
    "chunks_i_minus_1": ("None", "        if i > 0:\n            train_on(model, opt, chunks[i - 1], epochs)\n" + SCORE, False),
    "slice_i_minus_1": ("None", "        if i > 0:\n            train_on(model, opt, val_tokens[(i - 1) * C : i * C + 1], epochs)\n"
                        + SCORE, False),
    # illegal: the step trains on tokens before they are scored
    "current_chunk": ("None", "        if prev is not None:\n            train_on(model, opt, chunk, epochs)\n"
                      + SCORE + "\n        prev = chunk", True),
    "prev_assigned_first": ("None", "        prev = chunk\n        if prev is not None:\n"
                            "            train_on(model, opt, prev, epochs)\n" + SCORE, True),
    "prev_holds_next_chunk": ("None", "        if prev is not None:\n            train_on(model, opt, prev, epochs)\n"
                              + SCORE + "\n        prev = val_tokens[(i + 1) * C:(i + 2) * C + 1]", True),
    "prev_starts_as_val": ("val_tokens[:C + 1]", "        if prev is not None:\n            train_on(model, opt, prev, epochs)\n"
                           + SCORE + "\n        prev = chunk", True),
    "unguarded_i_minus_1": ("None", "        train_on(model, opt, chunks[i - 1], epochs)\n" + SCORE, True),
    "slice_reaches_current": ("None", "        if i > 0:\n            train_on(model, opt, val_tokens[(i - 1) * C : (i + 1) * C], epochs)\n"
                              + SCORE, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lagged_ttt(name: str):
    init, body, illegal = CASES[name]
    text = PROGRAM.replace("@@INIT@@", init).replace("@@BODY@@", body)
    result = audit_source(SourceFile("lagged.py", text, ""), {})
    got = {(f.rule_id, f.line) for f in result.findings if f.status is Status.ACTIVE and f.rule_id.startswith("PG-TTT")}
    if illegal:
        assert got == {("PG-TTT-001", STEP_LINE)}
    else:
        assert got == set()
