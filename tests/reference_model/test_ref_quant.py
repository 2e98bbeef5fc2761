"""Export: int6/int8 round-trip error bounds, scale floors (quirk Q4), size accounting, fresh-model reload."""

import io
import lzma

import pytest
import torch

from reference_model import quant
from reference_model.errors import ShardFormatError
from reference_model.model import GPT


def test_round_trip_error_bounds(trained, tiny_cfg):
    sd = trained.state_dict()
    obj, stats = quant.quantize_state_dict(sd, tiny_cfg.eval)
    deq = quant.dequantize_state_dict(obj)
    assert stats["int6"] > 0 and stats["int8"] > 0 and stats["fp16"] > 0
    for name, w in sd.items():
        kind, d = obj["kind"][name], deq[name]
        assert d.dtype == w.dtype and d.shape == w.shape
        if kind == "fp16":
            assert torch.allclose(d, w, rtol=1e-3, atol=1e-6), name
            continue
        s = obj["s"][name].float()[:, None]
        levels = 31 if kind == "int6" else 127
        assert (obj["q"][name].abs() <= levels).all()
        clipped = torch.maximum(torch.minimum(w, levels * s), -levels * s)
        assert ((d - clipped).abs() <= s / 2 + 1e-6).all(), name
        if kind == "int6":
            assert stats["percentiles"][name] in tiny_cfg.eval.int6_percentiles
    assert set(obj["kind"].values()) == {"int6", "int8", "fp16"}
    assert obj["kind"]["tok_emb.weight"] == "int8" and obj["kind"]["blocks.0.mlp.up.weight"] == "int6"


def test_absolute_scale_floors_are_reproduced():
    w = torch.zeros(4, 300)
    w[0, :] = 0.01
    w[1, 0] = 0.5
    w[2, 0] = 3.1
    w[3, :] = torch.linspace(-2, 2, 300)
    _, scale, _, floored = quant.quantize_int6(w, (1.0,))
    assert scale[0].item() == scale[1].item() == torch.tensor(1 / 31).half().item()
    assert scale[2].item() == torch.tensor(3.1 / 31).half().item()
    assert floored == 0.5
    _, scale8, floored8 = quant.quantize_int8(w)
    assert scale8[0].item() == torch.tensor(1 / 127).half().item() and floored8 == 0.5


def test_size_grows_with_the_passthrough_threshold(trained, tiny_cfg, tmp_path):
    sizes = []
    for limit in (256, 1024, 20_000, 100_000):
        cfg = tiny_cfg.with_overrides([f"eval.quant_passthrough_max={limit}"])
        sizes.append(quant.export(trained, tmp_path / f"m{limit}.ptz", cfg)["model_bytes"])
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_export_and_fresh_reload(trained, tiny_cfg, tmp_path):
    path = tmp_path / "final_model.int6.ptz"
    stats = quant.export(trained, path, tiny_cfg)
    assert stats["artifact_bytes"] == stats["model_bytes"] + stats["code_bytes"] == path.stat().st_size + \
        quant.code_bytes()
    assert stats["within_limit"] and stats["codec"] in ("zstd-22", "lzma-6")
    model = quant.load_artifact(path, tiny_cfg, torch.device("cpu"))
    assert model is not trained and not model.training
    ref = GPT(tiny_cfg.model)
    obj, _ = quant.quantize_state_dict(trained.state_dict(), tiny_cfg.eval)
    ref.load_state_dict(quant.dequantize_state_dict(obj))
    x = torch.randint(0, 1024, (2, 64))
    assert torch.equal(model.logits(x), ref.logits(x))


def test_lzma_fallback_and_corrupt_artifacts(tiny_cfg, tmp_path):
    raw = io.BytesIO()
    torch.save({"a": 1}, raw)
    assert quant.decompress(lzma.compress(raw.getvalue())) == raw.getvalue()
    bad = tmp_path / "bad.ptz"
    bad.write_bytes(b"not an artifact")
    with pytest.raises(ShardFormatError, match="not a readable model artifact"):
        quant.load_artifact(bad, tiny_cfg, torch.device("cpu"))
