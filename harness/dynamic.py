"""Orchestration of the dynamic audit.

* :func:`audit_reference` — the reference model, exactly: an evaluation mode (legal TTT or an illegal control) runs
  through its observer into a ledger, the ledger is checked, the C1/C2 probes run on a bounded prefix.
* :func:`audit_script` — a third-party ``train_gpt.py``: a small dataset in the official layout, the script run in
  the sandbox under the tracer with environment overrides for a short run, the trace turned into a ledger and
  checked, the C1 probe as a second run with the validation tokens after k replaced (``scorefirst audit --dynamic``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.checks import SCRIPT_TOLERANCE, Tolerance, build_timeline, check_ledger
from harness.dynamic_result import Check, DynamicResult, Probe, SandboxInfo
from harness.ledger import Ledger, LedgerObserver, LedgerWriter

REPO = Path(__file__).resolve().parents[1]


def doc_starts(tokens: np.ndarray, bos_id: int = 1) -> list[int]:
    """Document starts as the reference's per-document TTT cuts them (BOS to the next BOS, position 0 always)."""
    starts = np.flatnonzero(tokens[:-1] == bos_id)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    return [int(s) for s in starts]


def finish(result: DynamicResult, ledger: Ledger, outcome) -> DynamicResult:
    result.ledger = ledger.summary()
    result.reconstructed = {"val_loss": outcome.reconstructed.get("val_loss"),
                            "val_bpb": outcome.reconstructed.get("val_bpb")}
    result.checks = list(outcome.checks) + list(result.checks)
    result.timeline = build_timeline(ledger, outcome.violations)
    return result


# --- the reference model -------------------------------------------------------------------------------------------


def audit_reference(mode: str, make_model, val: np.ndarray, bytes_at: np.ndarray, cfg, ledger_path: Path,
                    probes: bool = True, probe_tokens: int = 1100, dist_fn_model=None) -> DynamicResult:
    """Evaluate ``mode`` on ``val`` through a :class:`LedgerObserver`, check the ledger, probe C1 and C2.

    ``make_model()`` returns a fresh copy of the evaluated model (TTT modes adapt it). Probes run on the first
    ``probe_tokens`` tokens (bounded cost) with fresh copies.
    """
    import torch

    from reference_model.modes import MODES
    from harness.probes import future_perturbation, model_dist_fn, normalization, reference_eval_fn

    spec = MODES[mode]
    obs = LedgerObserver(LedgerWriter(ledger_path, positions=int(val.size),
                                      meta={"mode": mode, "legal": spec.legal, "rule": spec.rule}))
    try:
        res = spec.function()(make_model(), val, torch.from_numpy(bytes_at.astype(np.int64)), cfg, obs)
    except BaseException:
        obs.close(complete=False)
        raise
    obs.close()
    ledger = Ledger(ledger_path)
    reported = {k: res.get(k) for k in ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes")}
    outcome = check_ledger(ledger, bytes_at=bytes_at, reported=reported, doc_starts=doc_starts(val))
    result = DynamicResult(mode="reference", script=f"reference_model --ttt {mode} ({spec.label})",
                           reported={"val_loss": res.get("val_loss"), "val_bpb": res.get("val_bpb")})
    if probes:
        prefix = val[:probe_tokens].copy()
        pbytes = lambda t: torch.ones(t.size, dtype=torch.long)  # noqa: E731 - NLL only
        result.probes.append(future_perturbation(reference_eval_fn(mode, make_model, cfg, bytes_fn=pbytes), prefix,
                                                 cfg.model.vocab_size, what=f"reference {mode} evaluation"))
        model = dist_fn_model or make_model()
        result.probes.append(normalization(model_dist_fn(model), prefix, cfg.model.vocab_size,
                                           context=cfg.eval.seq_len, what="reference model head (softcapped logits)"))
    return finish(result, ledger, outcome)
