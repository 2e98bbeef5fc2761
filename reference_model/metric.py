"""val_loss and val_bpb (spec 2): byte lookup tables from the loaded tokenizer and float64 accumulators.

Bytes are counted per scored target: base_bytes[y] plus one for a leading "▁" unless the previous token is a
boundary (control, unknown or unused). A per-position table ``bytes_at[p]`` (p = index of the target token in the
validation stream) turns every scoring event into a lookup, whatever order positions are scored in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ByteLUT:
    base_bytes: np.ndarray          # int16
    has_leading_space: np.ndarray   # bool
    is_boundary: np.ndarray         # bool, True by default (ids beyond the tokenizer are boundaries)


def build_luts(sp, model_vocab: int) -> ByteLUT:
    """Canonical LUT (PG-BPB-001): predicates from the .model, never a hard-coded id layout (quirk A1)."""
    n = max(sp.vocab_size(), model_vocab)
    base = np.zeros(n, dtype=np.int16)
    space = np.zeros(n, dtype=bool)
    boundary = np.ones(n, dtype=bool)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i], piece = True, piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteLUT(base, space, boundary)


def target_bytes(tokens: np.ndarray, lut: ByteLUT) -> np.ndarray:
    """bytes_at[p] for every position p of the stream; position 0 is never a target and counts 0."""
    tokens = np.asarray(tokens, dtype=np.int64)
    out = np.zeros(tokens.size, dtype=np.int16)
    y, x = tokens[1:], tokens[:-1]
    out[1:] = lut.base_bytes[y] + (lut.has_leading_space[y] & ~lut.is_boundary[x])
    return out


def bpb(loss_sum: float, byte_count: float) -> float:
    return loss_sum / (byte_count * math.log(2)) if byte_count else float("nan")


class BpbMeter:
    """Float64 sums of NLL, targets and bytes on the scoring device; one host sync at ``result``."""

    def __init__(self, bytes_at: torch.Tensor):
        self.bytes_at = bytes_at
        dev = bytes_at.device
        self.loss = torch.zeros((), dtype=torch.float64, device=dev)
        self.count = torch.zeros((), dtype=torch.float64, device=dev)
        self.bytes = torch.zeros((), dtype=torch.float64, device=dev)

    def add(self, positions: torch.Tensor, nll: torch.Tensor, nll_scale: float = 1.0) -> None:
        self.loss += nll.double().sum() * nll_scale
        self.count += positions.numel()
        self.bytes += self.bytes_at[positions].double().sum()

    def result(self) -> dict:
        loss, count, nbytes = float(self.loss), float(self.count), float(self.bytes)
        return {"val_loss": loss / count if count else float("nan"), "val_bpb": bpb(loss, nbytes),
                "loss_sum": loss, "tokens": int(count), "bytes": int(nbytes)}
