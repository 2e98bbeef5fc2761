"""Model shapes, parameter counts, determinism, causality and the quirk decisions (Q3 NTK, Q11 BOS mask)."""

import dataclasses
import math

import pytest
import torch

from reference_model import config
from reference_model.model import GPT, Rotary, bos_or_start, fake_quant_int6


def test_parameter_counts_match_the_logged_records():
    assert GPT(config.record().model).num_params() == 26_928_220  # [L23]
    assert GPT(config.baseline().model).num_params() == 17_059_912  # [NB]


def test_shapes_and_loss(tiny_cfg):
    torch.manual_seed(0)
    model = GPT(tiny_cfg.model)
    x = torch.randint(0, 1024, (3, 40))
    logits = model.logits(x)
    assert logits.shape == (3, 40, 1024) and logits.dtype == torch.float32
    assert logits.abs().max() <= tiny_cfg.model.logit_softcap
    assert model(x, x, reduction="none").shape == (3, 40)
    assert model(x, x).ndim == 0
    assert model.hidden(x).shape == (3, 40, 64)


def test_fixed_seed_is_deterministic(tiny_cfg):
    outs = []
    for _ in range(2):
        torch.manual_seed(1234)
        model = GPT(tiny_cfg.model)
        x = torch.randint(0, 1024, (2, 64))
        outs.append(model.logits(x))
    assert torch.equal(outs[0], outs[1])


def test_changing_a_token_leaves_earlier_logits_bit_identical(trained):
    x = torch.randint(4, 1024, (2, 128))
    j = 77
    y = x.clone()
    y[:, j] = (y[:, j] + 5) % 1000 + 4
    a, b = trained.logits(x), trained.logits(y)
    assert torch.equal(a[:, :j], b[:, :j])
    assert not torch.equal(a[:, j], b[:, j])


def test_bos_mask_stops_smear_and_bigram_at_document_starts(trained, tiny_cfg):
    bos = tiny_cfg.model.bos_id
    x = torch.tensor([[bos, 10, 11, 12, bos, 20, 21]])
    start = bos_or_start(x, tiny_cfg.model)
    assert start.tolist() == [[True, False, False, False, True, False, False]]
    idx = trained.bigram.index(x, start)
    assert idx[0, 0] == idx[0, 4] == tiny_cfg.model.bigram_buckets - 1
    unmasked = dataclasses.replace(tiny_cfg.model, bos_mask=False)
    assert bos_or_start(x, unmasked)[0, 4].item() is False


def test_ntk_rope_base_at_2048_with_16_dims():
    rot = Rotary(dims=16, base=10000.0, train_len=1024)
    cos, _ = rot(2048, "cpu")
    base = 10000 * 2 ** (16 / 14)
    assert base == pytest.approx(22_082, abs=1)
    inv = torch.arange(0, 16, 2, dtype=torch.float32) / 16
    expected = torch.cos(torch.outer(torch.arange(2048.0), base ** -inv))
    assert torch.allclose(cos, expected, atol=1e-5)
    cos_short, _ = rot(1024, "cpu")
    assert torch.allclose(cos_short[:, 1], torch.cos(torch.arange(1024.0) * 10000 ** (-2 / 16)), atol=1e-5)


def test_stack_init_matches_the_spec(tiny_cfg):
    torch.manual_seed(0)
    model = GPT(tiny_cfg.model)
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.down.weight.any()
        w = block.attn.c_q.weight
        assert torch.allclose(w @ w.T, torch.eye(w.size(0)), atol=1e-5)
    assert not model.bigram.embed.weight.any()
    assert model.tok_emb.weight.std().item() == pytest.approx(0.005, rel=0.1)
    assert model.blocks[3].ln == pytest.approx(1 / math.sqrt(4))
    assert [b.attn.xsa for b in model.blocks] == [False, False, False, True, True]


def test_late_qat_fake_quant_has_floor_and_int6_range():
    w = torch.tensor([[0.1, -0.05, 0.2], [3.0, -6.2, 0.0]])
    q = fake_quant_int6(w)
    assert torch.allclose(q[0], torch.round(w[0] * 31) / 31)  # floor 1/31 binds for a row max below 1
    levels = q[1] / (6.2 / 31)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 31
    assert (q - w).abs().max() <= 6.2 / 31 / 2 + 1e-6


def test_config_overrides_and_checks():
    from reference_model.errors import InputError

    cfg = config.tiny().with_overrides(["train.iterations=5", "model.ve_layers=[1, 2]", "train.compile=false",
                                        "train.matrix_lr=0.1", "train.averaging=swa"])
    assert cfg.train.iterations == 5 and cfg.model.ve_layers == (1, 2) and cfg.train.compile is False
    assert cfg.train.matrix_lr == 0.1 and cfg.train.averaging == "swa" and cfg.check() is cfg
    for bad in ("train.iterations=abc", "train.iterations=1.5", "train.compile=1", "nope.x=1", "train.x=1",
                "model.ve_layers=3"):
        with pytest.raises(InputError):
            config.tiny().with_overrides([bad])
    with pytest.raises(InputError, match="ve_layers"):
        config.tiny().with_overrides(["model.ve_layers=[7]"]).check()
    with pytest.raises(InputError, match="batch_tokens"):
        config.tiny().with_overrides(["train.batch_tokens=1000"]).check()
