"""Export (spec 5.2, the [E22]/[L23] "GPTQ-lite" mix): int6 per-row for attention and MLP matrices with one clip
percentile searched per matrix, int8 per-row for the embeddings, fp16 passthrough for small tensors; zstd-22.

Scales keep the official absolute floors (quirk Q4): s = max(c/31, 1/31) and max(c/127, 1/127), so rows whose clip
value is below 1.0 get fewer levels; ``stats['floor_rows']`` reports how often that binds.
"""

from __future__ import annotations

import io
import lzma
from pathlib import Path

import torch

from .config import Config, EvalConfig
from .model import GPT

INT8_PERCENTILE = 0.9999984
ZSTD_MAGIC, XZ_MAGIC = b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00"


def _category(name: str) -> str:
    return "attn" if ".attn." in name else "mlp" if ".mlp." in name else "other"


def _row_quantile(a: torch.Tensor, p: float) -> torch.Tensor:
    return a.amax(dim=1) if p >= 1.0 else torch.quantile(a, p, dim=1)


def quantize_int6(w: torch.Tensor, percentiles: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Symmetric 63-level int6 per row; returns (q int8, scale fp16, chosen percentile, fraction of floored rows)."""
    w = w.detach().float()
    a = w.abs()
    best = None
    for p in percentiles:
        clip = _row_quantile(a, p)
        scale = (clip / 31).clamp_min(1 / 31).half()
        q = (w / scale.float()[:, None]).round().clamp(-31, 31)
        err = (w - q * scale.float()[:, None]).square().mean().item()
        if best is None or err < best[0]:
            best = (err, q.to(torch.int8), scale, p, (clip < 1).float().mean().item())
    return best[1], best[2], best[3], best[4]


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """int8 per row with the 99.99984th-percentile clip of [BASE]; returns (q, scale fp16, floored rows)."""
    w = w.detach().float()
    clip = _row_quantile(w.abs(), INT8_PERCENTILE)
    scale = (clip / 127).clamp_min(1 / 127).half()
    q = (w.clamp(-clip[:, None], clip[:, None]) / scale.float()[:, None]).round().clamp(-127, 127)
    return q.to(torch.int8), scale, (clip < 1).float().mean().item()


def quantize_state_dict(sd: dict[str, torch.Tensor], ecfg: EvalConfig) -> tuple[dict, dict]:
    """Returns (the object to serialize, stats). Rule order follows [E22]: size first, then category."""
    q, scales, passthrough, kinds, dtypes = {}, {}, {}, {}, {}
    stats = {"int6": 0, "int8": 0, "fp16": 0, "floor_rows": {}, "percentiles": {}}
    for name, t in sd.items():
        dtypes[name] = str(t.dtype).removeprefix("torch.")
        if not t.is_floating_point() or t.numel() <= ecfg.quant_passthrough_max or t.ndim != 2:
            passthrough[name] = t.detach().half() if t.is_floating_point() else t.detach()
            kinds[name], stats["fp16"] = "fp16", stats["fp16"] + 1
        elif _category(name) in ("attn", "mlp"):
            q[name], scales[name], p, floor = quantize_int6(t, ecfg.int6_percentiles)
            kinds[name], stats["int6"] = "int6", stats["int6"] + 1
            stats["percentiles"][name], stats["floor_rows"][name] = p, floor
        else:
            q[name], scales[name], floor = quantize_int8(t)
            kinds[name], stats["int8"] = "int8", stats["int8"] + 1
            stats["floor_rows"][name] = floor
    obj = {"q": q, "s": scales, "p": passthrough, "kind": kinds, "dtype": dtypes}
    return obj, stats


def dequantize_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    out = {}
    for name, kind in obj["kind"].items():
        dtype = getattr(torch, obj["dtype"][name])
        if kind == "fp16":
            out[name] = obj["p"][name].to(dtype)
        else:
            out[name] = (obj["q"][name].float() * obj["s"][name].float()[:, None]).to(dtype)
    return out


def compress(raw: bytes) -> tuple[bytes, str]:
    try:
        import zstandard
    except ImportError:
        return lzma.compress(raw, preset=6), "lzma-6"
    return zstandard.ZstdCompressor(level=22).compress(raw), "zstd-22"


def decompress(blob: bytes) -> bytes:
    if blob.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    if blob.startswith(XZ_MAGIC):
        return lzma.decompress(blob)
    raise ValueError("artifact is neither zstd nor xz")


def code_bytes() -> int:
    """Bytes of this package's source: our stand-in for the counted ``train_gpt.py``."""
    return sum(p.stat().st_size for p in sorted(Path(__file__).parent.glob("*.py")))


def export(model: GPT, path: Path, cfg: Config) -> dict:
    obj, stats = quantize_state_dict(model.state_dict(), cfg.eval)
    buf = io.BytesIO()
    torch.save(obj, buf)
    blob, codec = compress(buf.getvalue())
    Path(path).write_bytes(blob)
    code = code_bytes()
    stats.update(codec=codec, model_bytes=len(blob), code_bytes=code, artifact_bytes=len(blob) + code,
                 artifact_limit=cfg.eval.artifact_limit, within_limit=len(blob) + code <= cfg.eval.artifact_limit)
    return stats


def load_artifact(path: Path, cfg: Config, device: torch.device) -> GPT:
    """Decompress, dequantize and load strictly into a freshly built model: the eval model of spec 5.2."""
    from .errors import ShardFormatError

    try:
        obj = torch.load(io.BytesIO(decompress(Path(path).read_bytes())), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure means the file is not one of our artifacts
        raise ShardFormatError(f"{path}: not a readable model artifact ({exc})") from None
    model = GPT(cfg.model)
    model.load_state_dict(dequantize_state_dict(obj), strict=True)
    return model.to(device).eval()
