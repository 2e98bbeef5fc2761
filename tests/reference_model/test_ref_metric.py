"""Byte lookup tables and val_bpb: summed bytes equal the UTF-8 length of the decoded text (PG-BPB-001)."""

import math

import numpy as np
import pytest
import torch

from reference_model import metric
from reference_model.metric import BpbMeter

TEXTS = ["Hello world, this is a test.", "Numbers 12345 and 2026-11-22 split into digits.",
         "Multiple   spaces\tand\nnewlines collapse.", "Punctuation: (a) [b] {c} -- 'quotes' \"double\"!",
         "def f(x):\n    return x ** 2  # code", "A sentence with a trailing space "]


def _doc_bytes(lut, ids):
    stream = np.array([1] + ids)
    return int(metric.target_bytes(stream, lut)[1:].sum())


@pytest.mark.parametrize("which", ["trained", "sp1024"])
def test_bytes_equal_decoded_utf8_length(which, request, val_full):
    tok = request.getfixturevalue("sp" if which == "trained" else "sp1024")
    lut = metric.build_luts(tok, 1024)
    docs = [tok.decode([int(t) for t in d]) for d in np.split(val_full, np.flatnonzero(val_full == 1))[1:40]]
    checked = 0
    for text in TEXTS + docs:
        ids = tok.encode(text)
        if tok.unk_id() in ids:
            continue  # <unk> counts 0 bytes but decodes to " ⁇ " (spec 2.3 exception)
        assert _doc_bytes(lut, ids) == len(tok.decode(ids).encode("utf-8")), text[:60]
        checked += 1
    assert checked >= len(TEXTS)


def test_lut_rules_from_model_predicates(sp):
    lut = metric.build_luts(sp, 1100)
    assert lut.base_bytes.size == 1100 and lut.is_boundary[1024:].all()
    for i in (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()):
        assert lut.is_boundary[i] and lut.base_bytes[i] == 0 and not lut.has_leading_space[i]
    byte_ids = [i for i in range(sp.vocab_size()) if sp.is_byte(i)]
    assert len(byte_ids) == 256 and (lut.base_bytes[byte_ids] == 1).all()
    space = sp.piece_to_id("\u2581")
    assert lut.has_leading_space[space] and lut.base_bytes[space] == 0
    for i in range(sp.vocab_size()):
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581") and len(piece) > 1 and not sp.is_control(i):
            assert lut.base_bytes[i] == len(piece[1:].encode()) and lut.has_leading_space[i]


def test_leading_space_not_counted_after_boundary(sp):
    lut = metric.build_luts(sp, 1024)
    word = next(i for i in range(sp.vocab_size()) if sp.id_to_piece(i).startswith("\u2581")
                and len(sp.id_to_piece(i)) > 2)
    plain = next(i for i in range(sp.vocab_size()) if not sp.is_byte(i) and not sp.is_control(i)
                 and not sp.is_unknown(i) and not sp.id_to_piece(i).startswith("\u2581"))
    stream = np.array([1, word, plain, word])
    b = metric.target_bytes(stream, lut)
    n = lut.base_bytes[word]
    assert b.tolist() == [0, n, lut.base_bytes[plain], n + 1]


def test_meter_bpb_formula():
    bytes_at = torch.tensor([0, 3, 2, 0, 5])
    m = BpbMeter(bytes_at)
    m.add(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
    m.add(torch.tensor([3, 4]), torch.tensor([0.5, 0.5]))
    r = m.result()
    assert r["tokens"] == 4 and r["bytes"] == 10 and r["val_loss"] == pytest.approx(1.0)
    assert r["val_bpb"] == pytest.approx(4.0 / (10 * math.log(2)))
    assert metric.bpb(4.0, 10) == pytest.approx(r["val_bpb"])
