"""Everything that runs *inside* an audited script's process.

The folder itself goes first on the script's ``PYTHONPATH``, so Python imports :mod:`sitecustomize` from here
before the script starts (the torchrun launcher loads it too, and so does every rank it spawns):

* ``scorefirst_guard`` — an audit hook that reports network attempts and writes outside the work directory through
  a FIFO the harness drains (enforcement is the sandbox's job; the records are the evidence);
* ``scorefirst_trace`` — the tracer, when ``SCOREFIRST_TRACE`` names a ledger folder: embedding inputs, the
  vocabulary-sized projection, losses, backward passes, optimizer steps, in-place parameter changes and restores
  (``scorefirst_state``), collectives, mapped to validation positions and written to a ledger (one per rank).

``fa3/`` holds a stand-in ``flash_attn_interface`` (FlashAttention-3's ``flash_attn_func`` on top of
``scaled_dot_product_attention``), put on the path only when the real module is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TRACER_DIR = Path(__file__).resolve().parent
STANDIN_DIR = TRACER_DIR / "fa3"

ENV_GUARD_LOG = "SCOREFIRST_GUARD_LOG"
ENV_WORKDIR = "SCOREFIRST_WORKDIR"
ENV_TRACE = "SCOREFIRST_TRACE"
ENV_VAL = "SCOREFIRST_VAL_TOKENS"
ENV_VOCAB = "SCOREFIRST_VOCAB"
ENV_REPO = "SCOREFIRST_REPO"


def python_path(extra: str | None = None) -> str:
    """PYTHONPATH for an audited script: the tracer folder, the FA3 stand-in when FA3 is absent, then ``extra``."""
    parts = [str(TRACER_DIR)]
    if importlib.util.find_spec("flash_attn_interface") is None:
        parts.append(str(STANDIN_DIR))
    if extra:
        parts.append(extra)
    return ":".join(parts)
