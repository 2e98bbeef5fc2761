# -*- coding: utf-8 -*-
"""11L LeakyReLU(0.5)^2 + XSA4 + partial RoPE + BigramHash(1536) + BOS-masked SmearGate.
GPTQ-lite int6 + lzma. Eval: sliding window (stride 64), then legal score-first TTT:
each 32K-token chunk is scored under inference_mode before 3 epochs of SGD on it.
"""
from __future__ import annotations

import copy
import glob
import io
import lzma
import math
import os
import random
import time
import uuid
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

try:
    from flash_attn_interface import flash_attn_func as flash_attn_3_func
except ImportError:  # no FA3 on this box: fall back to SDPA below
    flash_attn_3_func = None


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    seed = int(os.environ.get("SEED", 1337))

    iterations = int(os.environ.get("ITERATIONS", 20000))
    warmdown_iters = int(os.environ.get("WARMDOWN_ITERS", 3500))
    warmup_steps = int(os.environ.get("WARMUP_STEPS", 20))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 786_432))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 2048))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", 2048))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))
    eval_batch_seqs = int(os.environ.get("EVAL_BATCH_SEQS", 32))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    train_log_every = int(os.environ.get("TRAIN_LOG_EVERY", 500))

    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    mlp_mult = float(os.environ.get("MLP_MULT", 3.0))
    rope_dims = int(os.environ.get("ROPE_DIMS", 16))
    rope_base = float(os.environ.get("ROPE_BASE", 10000.0))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    qk_gain_init = float(os.environ.get("QK_GAIN_INIT", 1.5))
    bigram_buckets = int(os.environ.get("BIGRAM_BUCKETS", 2048))
    bigram_dim = int(os.environ.get("BIGRAM_DIM", 128))
    xsa_last_n = int(os.environ.get("XSA_LAST_N", 4))

    matrix_lr = float(os.environ.get("MATRIX_LR", 0.025))
    scalar_lr = float(os.environ.get("SCALAR_LR", 0.025))
    tied_embed_lr = float(os.environ.get("TIED_EMBED_LR", 0.035))
    muon_momentum = float(os.environ.get("MUON_MOMENTUM", 0.99))
    muon_momentum_warmup_start = float(os.environ.get("MUON_MOMENTUM_WARMUP_START", 0.92))
    muon_momentum_warmup_steps = int(os.environ.get("MUON_MOMENTUM_WARMUP_STEPS", 1500))
    muon_wd = float(os.environ.get("MUON_WD", 0.04))
    adam_wd = float(os.environ.get("ADAM_WD", 0.04))
    grad_clip_norm = float(os.environ.get("GRAD_CLIP_NORM", 0.3))
    ema_decay = float(os.environ.get("EMA_DECAY", 0.997))
    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "1")))
    ttt_lr = float(os.environ.get("TTT_LR", 0.002))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", 3))
    ttt_chunk_tokens = int(os.environ.get("TTT_CHUNK_TOKENS", 32768))
    ttt_batch_seqs = int(os.environ.get("TTT_BATCH_SEQS", 32))
    ttt_momentum = float(os.environ.get("TTT_MOMENTUM", 0.9))
    ttt_grad_clip = float(os.environ.get("TTT_GRAD_CLIP", 1.0))


@torch.compile
def _ns5(G: Tensor, steps: int = 5) -> Tensor:
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16()
    X /= X.norm() + 1e-7
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.mT
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["buf"] = torch.zeros_like(p.grad)
                st["buf"].lerp_(p.grad, 1 - mom)
                upd = _ns5(p.grad.lerp(st["buf"], mom), group["ns_steps"])
                if wd > 0:
                    p.mul_(1 - lr * wd)
                p.add_(upd.to(p.dtype), alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def build_byte_luts(sp: spm.SentencePieceProcessor, vocab_size: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """bytes(y_t) = base_bytes[y_t] + [has_space[y_t] and not boundary[x_t]]"""
    n = max(int(sp.vocab_size()), vocab_size)
    base_bytes = np.zeros(n, dtype=np.int16)
    has_space = np.zeros(n, dtype=np.bool_)
    boundary = np.ones(n, dtype=np.bool_)
    for tid in range(int(sp.vocab_size())):
        if sp.is_control(tid) or sp.is_unknown(tid) or sp.is_unused(tid):
            continue
        boundary[tid] = False
        if sp.is_byte(tid):
            base_bytes[tid] = 1
            continue
        piece = sp.id_to_piece(tid)
        if piece[:1] == "\u2581":
            has_space[tid] = True
            piece = piece[1:]
        base_bytes[tid] = len(piece.encode("utf-8"))
    as_t = lambda a, dt: torch.from_numpy(a).to(device=device, dtype=dt)
    return as_t(base_bytes, torch.int16), as_t(has_space, torch.bool), as_t(boundary, torch.bool)


_SHARD_MAGIC = 20240520


def load_data_shard(path: str | Path) -> Tensor:
    path = Path(path)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == _SHARD_MAGIC and header[1] == 1, f"bad shard {path}"
    n = int(header[2])
    assert path.stat().st_size == 1024 + 2 * n, f"truncated shard {path}"
    return torch.from_numpy(np.memmap(path, dtype="<u2", mode="r", offset=1024, shape=(n,)).astype(np.int32))


def load_validation_tokens(pattern: str, seq_len: int) -> Tensor:
    toks = torch.cat([load_data_shard(f) for f in sorted(glob.glob(pattern))])
    usable = (toks.numel() - 1) // seq_len * seq_len
    return toks[: usable + 1].contiguous()


class TokenStream:
    def __init__(self, pattern: str):
        self.files = sorted(glob.glob(pattern))
        assert self.files, f"no shards match {pattern}"
        self.idx = 0
        self.buf = load_data_shard(self.files[0])
        self.pos = 0

    def take(self, n: int) -> Tensor:
        out = []
        while n:
            if self.pos == self.buf.numel():
                self.idx = (self.idx + 1) % len(self.files)
                self.buf, self.pos = load_data_shard(self.files[self.idx]), 0
            k = min(n, self.buf.numel() - self.pos)
            out.append(self.buf[self.pos : self.pos + k])
            self.pos += k
            n -= k
        return torch.cat(out)


class DistributedTokenLoader:
    def __init__(self, pattern: str, rank: int, world: int, device):
        self.stream, self.rank, self.world, self.device = TokenStream(pattern), rank, world, device

    def next_batch(self, batch_tokens: int, seq_len: int, accum: int) -> tuple[Tensor, Tensor]:
        per = batch_tokens // (self.world * accum) + 1
        span = self.stream.take(per * self.world)[self.rank * per : (self.rank + 1) * per].long()
        return (span[:-1].view(-1, seq_len).to(self.device, non_blocking=True),
                span[1:].view(-1, seq_len).to(self.device, non_blocking=True))


CONTROL_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight", "smear", "bigram.scale", "ve_scale")


class CastedLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class BigramHashEmbedding(nn.Module):
    """Hashed (prev, cur) input-token pairs -> learned vectors; position 0 gets its own bucket."""

    def __init__(self, buckets: int, dim: int, model_dim: int):
        super().__init__()
        self.buckets = buckets
        self.embed = nn.Embedding(buckets, dim)
        nn.init.zeros_(self.embed.weight)
        self.proj = CastedLinear(dim, model_dim, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.05))

    def index(self, ids: Tensor) -> Tensor:
        t = ids.to(torch.int32)
        idx = torch.full_like(t, self.buckets - 1)
        idx[:, 1:] = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % (self.buckets - 1)
        return idx.long()

    def forward(self, ids: Tensor) -> Tensor:
        h = self.proj(self.embed(self.index(ids)))
        return h * self.scale.to(h.dtype)


class SmearGate(nn.Module):
    """x_t <- x_t + sigmoid(g) * (x_{t-1} - x_t), never across a document start (BOS)."""

    def __init__(self, dim: int, bos_id: int = 1):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))
        self.bos_id = bos_id

    def forward(self, x: Tensor, input_ids: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate.to(x.dtype))
        keep = (input_ids[:, 1:] != self.bos_id).to(x.dtype).unsqueeze(-1)
        mixed = x[:, 1:] + keep * g * (x[:, :-1] - x[:, 1:])
        return torch.cat([x[:, :1], mixed], dim=1)


class PartialRotary(nn.Module):
    def __init__(self, rope_dims: int, base: float, train_seq_len: int = 1024):
        super().__init__()
        self.rope_dims, self.base, self.train_seq_len = rope_dims, base, train_seq_len
        self._cache: dict = {}

    def forward(self, T: int, device) -> tuple[Tensor, Tensor]:
        if (T, device) not in self._cache:
            base = self.base
            if T > self.train_seq_len:  # NTK-style rescale for longer contexts
                base = base * (T / self.train_seq_len) ** (self.rope_dims / (self.rope_dims - 2))
            inv = 1.0 / base ** (torch.arange(0, self.rope_dims, 2, device=device, dtype=torch.float32) / self.rope_dims)
            f = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv)
            self._cache[(T, device)] = (f.cos()[None, :, None, :], f.sin()[None, :, None, :])
        return self._cache[(T, device)]


def rope_partial(x: Tensor, cos: Tensor, sin: Tensor, rd: int) -> Tensor:
    h = rd // 2
    a, b, rest = x[..., :h], x[..., h:rd], x[..., rd:]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([a * c + b * s, b * c - a * s, rest], dim=-1)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    if flash_attn_3_func is not None:
        return flash_attn_3_func(q, k, v, causal=True)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=True)
    return y.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, h, layer_idx: int):
        super().__init__()
        self.nh, self.nkv, self.hd = h.num_heads, h.num_kv_heads, h.model_dim // h.num_heads
        self.rd = h.rope_dims
        self.c_q = CastedLinear(h.model_dim, h.model_dim, bias=False)
        self.c_k = CastedLinear(h.model_dim, self.nkv * self.hd, bias=False)
        self.c_v = CastedLinear(h.model_dim, self.nkv * self.hd, bias=False)
        self.proj = CastedLinear(h.model_dim, h.model_dim, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.q_gain = nn.Parameter(torch.full((self.nh,), h.qk_gain_init))
        self.rotary = PartialRotary(h.rope_dims, h.rope_base)
        self.use_xsa = layer_idx >= h.num_layers - h.xsa_last_n

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q = F.rms_norm(self.c_q(x).view(B, T, self.nh, self.hd), (self.hd,))
        k = F.rms_norm(self.c_k(x).view(B, T, self.nkv, self.hd), (self.hd,))
        v = self.c_v(x).view(B, T, self.nkv, self.hd)
        cos, sin = self.rotary(T, x.device)
        q = rope_partial(q, cos, sin, self.rd) * self.q_gain.to(q.dtype)[None, None, :, None]
        k = rope_partial(k, cos, sin, self.rd)
        y = attention(q, k, v)
        if self.use_xsa:  # remove the component along the token's own value direction
            yg = y.view(B, T, self.nkv, self.nh // self.nkv, self.hd)
            vn = F.normalize(v, dim=-1).unsqueeze(3)
            y = (yg - (yg * vn).sum(-1, keepdim=True) * vn).view(B, T, self.nh, self.hd)
        return self.proj(y.reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, h, i: int):
        super().__init__()
        hidden = int(h.mlp_mult * h.model_dim)
        self.attn = Attention(h, i)
        self.up = CastedLinear(h.model_dim, hidden, bias=False)
        self.down = CastedLinear(hidden, h.model_dim, bias=False)
        nn.init.zeros_(self.down.weight)
        self.attn_scale = nn.Parameter(torch.ones(h.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(h.model_dim))
        self.resid_mix = nn.Parameter(torch.stack([torch.ones(h.model_dim), torch.zeros(h.model_dim)]))
        self.ln_scale = 1.0 / math.sqrt(i + 1)

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        m = self.resid_mix.to(x.dtype)
        x = m[0] * x + m[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(F.rms_norm(x, (x.size(-1),)) * self.ln_scale)
        u = F.leaky_relu(self.up(F.rms_norm(x, (x.size(-1),)) * self.ln_scale), 0.5)
        return x + self.mlp_scale.to(x.dtype) * self.down(u.square())


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.softcap = h.logit_softcap
        self.tok_emb = nn.Embedding(h.vocab_size, h.model_dim)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.bigram = BigramHashEmbedding(h.bigram_buckets, h.bigram_dim, h.model_dim)
        self.smear = SmearGate(h.model_dim)
        self.blocks = nn.ModuleList([Block(h, i) for i in range(h.num_layers)])
        self.n_enc = h.num_layers // 2
        self.skip_weights = nn.Parameter(torch.ones(self.n_enc, h.model_dim))

    def forward_hidden(self, ids: Tensor) -> Tensor:
        x = self.tok_emb(ids) + self.bigram(ids)
        x = self.smear(F.rms_norm(x, (x.size(-1),)), ids)
        x0, skips = x, []
        for i, blk in enumerate(self.blocks):
            if i >= self.n_enc and skips:
                x = x + self.skip_weights[i - self.n_enc].to(x.dtype) * skips.pop()
            x = blk(x, x0)
            if i < self.n_enc:
                skips.append(x)
        return F.rms_norm(x, (x.size(-1),))

    def compute_logits(self, hidden: Tensor) -> Tensor:
        raw = F.linear(hidden, self.tok_emb.weight.to(hidden.dtype))
        return self.softcap * torch.tanh(raw / self.softcap)

    def forward_logits(self, ids: Tensor) -> Tensor:
        return self.compute_logits(self.forward_hidden(ids))

    def forward(self, ids: Tensor, targets: Tensor) -> Tensor:
        logits = self.forward_logits(ids).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def _category(name: str) -> str:
    if ".attn." in name:
        return "attn"
    if ".up." in name or ".down." in name:
        return "mlp"
    return "other"


def quantize_int6_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    """GPTQ-lite: per-row scales, one clip percentile per matrix chosen by reconstruction MSE."""
    w32 = w.float()
    best_err, best = float("inf"), None
    for pct in (0.999, 0.9995, 0.9999, 0.99999, 1.0):
        clip = w32.abs().amax(dim=1) if pct == 1.0 else torch.quantile(w32.abs(), pct, dim=1)
        scale = (clip / 31.0).clamp_min(1.0 / 31.0).half()
        q = torch.clamp(torch.round(w32 / scale.float()[:, None]), -31, 31)
        err = (w32 - q * scale.float()[:, None]).square().mean().item()
        if err < best_err:
            best_err, best = err, (q.to(torch.int8), scale)
    return best


def quantize_int8_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    w32 = w.float()
    clip = torch.quantile(w32.abs(), 0.9999984, dim=1)
    scale = (clip / 127.0).clamp_min(1.0 / 127.0).half()
    return torch.clamp(torch.round(w32 / scale.float()[:, None]), -127, 127).to(torch.int8), scale


def mixed_quantize(state: dict[str, Tensor]) -> dict:
    packed: dict[str, dict] = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if not t.is_floating_point() or t.numel() <= 65_536:
            packed[name] = {"kind": "raw", "t": t.half() if t.is_floating_point() else t, "dtype": str(t.dtype)}
        elif _category(name) in ("attn", "mlp"):
            q, s = quantize_int6_rows(t)
            packed[name] = {"kind": "int6", "q": q, "s": s, "dtype": str(t.dtype)}
        else:
            q, s = quantize_int8_rows(t)
            packed[name] = {"kind": "int8", "q": q, "s": s, "dtype": str(t.dtype)}
    return packed


def dequantize_mixed(packed: dict) -> dict[str, Tensor]:
    out = {}
    for name, e in packed.items():
        dt = getattr(torch, e["dtype"].removeprefix("torch."))
        out[name] = e["t"].to(dt) if e["kind"] == "raw" else (e["q"].float() * e["s"].float()[:, None]).to(dt)
    return out


def serialize_artifact(model: nn.Module, path: str) -> int:
    buf = io.BytesIO()
    torch.save(mixed_quantize(model.state_dict()), buf)
    blob = lzma.compress(buf.getvalue(), preset=6)
    Path(path).write_bytes(blob)
    return len(blob)


def load_artifact(path: str) -> dict[str, Tensor]:
    return dequantize_mixed(torch.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), map_location="cpu"))


def eval_val_sliding(args, model, rank, world_size, device, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut):
    """Every target scored exactly once, each with >= seq_len - stride tokens of context."""
    seq_len, stride = args.eval_seq_len, args.eval_stride
    total = val_tokens.numel() - 1
    starts = [ws for ws in range(0, total, stride) if ws == 0 or ws + seq_len - stride < total]
    mine = starts[len(starts) * rank // world_size : len(starts) * (rank + 1) // world_size]
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    tok_count = torch.zeros((), device=device, dtype=torch.float64)
    byte_count = torch.zeros((), device=device, dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for bi in range(0, len(mine), args.eval_batch_seqs):
            batch = mine[bi : bi + args.eval_batch_seqs]
            x = torch.zeros(len(batch), seq_len, dtype=torch.int64, device=device)
            y = torch.zeros_like(x)
            spans = []
            for i, ws in enumerate(batch):
                end = min(ws + seq_len, total)
                chunk = val_tokens[ws : end + 1].to(device=device, dtype=torch.int64)
                x[i, : end - ws], y[i, : end - ws] = chunk[:-1], chunk[1:]
                spans.append((0 if ws == 0 else seq_len - stride, end - ws))
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                logits = model.forward_logits(x)
            nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            for i, (s, e) in enumerate(spans):
                loss_sum += nll[i, s:e].double().sum()
                tok_count += e - s
                tgt, prev = y[i, s:e], x[i, s:e]
                nbytes = base_bytes_lut[tgt].double() + (has_leading_space_lut[tgt] & ~is_boundary_token_lut[prev]).double()
                byte_count += nbytes.sum()
    if dist.is_available() and dist.is_initialized():
        for t in (loss_sum, tok_count, byte_count):
            dist.all_reduce(t)
    val_loss = (loss_sum / tok_count).item()
    return val_loss, val_loss / math.log(2) * tok_count.item() / byte_count.item()


def eval_val_sliding_ttt(args, model, rank, world_size, device, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut, log0):
    seq_len, stride, chunk = args.eval_seq_len, args.eval_stride, args.ttt_chunk_tokens
    total = val_tokens.numel() - 1
    starts = [ws for ws in range(0, total, stride) if ws == 0 or ws + seq_len - stride < total]
    num_chunks = (total + chunk - 1) // chunk
    windows_by_chunk: list[list[int]] = [[] for _ in range(num_chunks)]
    for ws in starts:
        first_scored = ws if ws == 0 else ws + seq_len - stride
        windows_by_chunk[min(first_scored // chunk, num_chunks - 1)].append(ws)

    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    token_count = torch.zeros((), device=device, dtype=torch.float64)
    byte_count = torch.zeros((), device=device, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.ttt_lr, momentum=args.ttt_momentum)
    t0 = time.perf_counter()

    for ci in range(num_chunks):
        # ---- Phase 1: SCORE chunk ci with the weights trained on chunks < ci only ----
        wins = windows_by_chunk[ci]
        mine = wins[len(wins) * rank // world_size : len(wins) * (rank + 1) // world_size]
        model.eval()
        with torch.inference_mode():
            for bi in range(0, len(mine), args.eval_batch_seqs):
                batch = mine[bi : bi + args.eval_batch_seqs]
                x = torch.zeros(len(batch), seq_len, dtype=torch.int64, device=device)
                y = torch.zeros_like(x)
                spans = []
                for i, ws in enumerate(batch):
                    end = min(ws + seq_len, total)
                    toks = val_tokens[ws : end + 1].to(device=device, dtype=torch.int64)
                    x[i, : end - ws], y[i, : end - ws] = toks[:-1], toks[1:]
                    spans.append((0 if ws == 0 else seq_len - stride, end - ws))
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    logits = model.forward_logits(x)
                nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
                for i, (s, e) in enumerate(spans):
                    loss_sum += nll[i, s:e].double().sum()
                    token_count += e - s
                    tgt, prev = y[i, s:e], x[i, s:e]
                    byte_count += (base_bytes_lut[tgt].double() + (has_leading_space_lut[tgt] & ~is_boundary_token_lut[prev]).double()).sum()

        # ---- Phase 2: TRAIN on chunk ci (already scored); skip the last chunk ----
        is_last_chunk = ci == num_chunks - 1
        if not is_last_chunk and args.ttt_epochs > 0:
            lr = args.ttt_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(num_chunks - 1, 1)))
            for g in optimizer.param_groups:
                g["lr"] = lr
            c_start = ci * chunk
            n_seqs = min(chunk, total - c_start) // seq_len
            my_seqs = range(n_seqs * rank // world_size, n_seqs * (rank + 1) // world_size)
            model.train()
            for _ep in range(args.ttt_epochs):
                for bs in range(0, len(my_seqs), args.ttt_batch_seqs):
                    sel = my_seqs[bs : bs + args.ttt_batch_seqs]
                    a = c_start + sel[0] * seq_len
                    b = c_start + (sel[-1] + 1) * seq_len
                    local = val_tokens[a : b + 1].to(device=device, dtype=torch.int64)
                    xb, yb = local[:-1].view(-1, seq_len), local[1:].view(-1, seq_len)
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                        loss = model(xb, yb)
                    loss.backward()
                    if dist.is_available() and dist.is_initialized():
                        for p in params:
                            if p.grad is not None:
                                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
                    torch.nn.utils.clip_grad_norm_(params, args.ttt_grad_clip)
                    optimizer.step()
        if rank == 0 and ci % 200 == 0:
            log0(f"ttt_chunk:{ci}/{num_chunks} elapsed:{time.perf_counter() - t0:.1f}s")

    if dist.is_available() and dist.is_initialized():
        for t in (loss_sum, token_count, byte_count):
            dist.all_reduce(t)
    val_loss = (loss_sum / token_count).item()
    return val_loss, val_loss / math.log(2) * token_count.item() / byte_count.item()


def main() -> None:
    h = Hyperparameters()
    code = Path(__file__).read_text(encoding="utf-8")
    distributed = "RANK" in os.environ
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl", device_id=device)
    accum = 8 // world_size
    master = rank == 0
    log_path = Path("logs") / f"{h.run_id}.txt"
    log_path.parent.mkdir(exist_ok=True)

    def log0(s: str) -> None:
        if master:
            print(s, flush=True)
            with log_path.open("a") as fh:
                fh.write(s + "\n")

    random.seed(h.seed)
    np.random.seed(h.seed)
    torch.manual_seed(h.seed)
    sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
    val_tokens = load_validation_tokens(h.val_files, max(h.train_seq_len, h.eval_seq_len))
    base_bytes_lut, has_leading_space_lut, is_boundary_token_lut = build_byte_luts(sp, h.vocab_size, device)
    log0(f"val_loader:shards pattern={h.val_files} tokens:{val_tokens.numel() - 1}")

    base_model = GPT(h).to(device)
    model = torch.compile(base_model, dynamic=False)
    named = list(base_model.named_parameters())
    embed_params = [base_model.tok_emb.weight, base_model.bigram.embed.weight]
    matrix_params = [p for n, p in named if p.ndim == 2 and "blocks." in n]
    scalar_params = [p for n, p in named if p.ndim < 2 or "bigram.proj" in n]
    opt_embed = torch.optim.AdamW(embed_params, lr=h.tied_embed_lr, betas=(0.9, 0.95), weight_decay=h.adam_wd, fused=True)
    opt_muon = Muon(matrix_params, lr=h.matrix_lr, momentum=h.muon_momentum, weight_decay=h.muon_wd)
    opt_scalar = torch.optim.AdamW(scalar_params, lr=h.scalar_lr, betas=(0.9, 0.95), weight_decay=h.adam_wd, fused=True)
    optimizers = [opt_embed, opt_muon, opt_scalar]
    for o in optimizers:
        for g in o.param_groups:
            g["base_lr"] = g["lr"]
    log0(f"model_params:{sum(p.numel() for p in base_model.parameters())}")
    log0(f"world_size:{world_size} grad_accum_steps:{accum} seed:{h.seed}")

    def train_step(loader) -> Tensor:
        total = torch.zeros((), device=device)
        for _ in range(accum):
            x, y = loader.next_batch(h.train_batch_tokens, h.train_seq_len, accum)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = model(x, y)
            (loss / accum).backward()
            total += loss.detach() / accum
        if distributed:
            for p in base_model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        torch.nn.utils.clip_grad_norm_(base_model.parameters(), h.grad_clip_norm)
        for o in optimizers:
            o.step()
            o.zero_grad(set_to_none=True)
        return total

    # compile warm-up on training data, then restore the initial weights and optimizer state
    snapshot = copy.deepcopy(base_model.state_dict())
    opt_snapshots = [copy.deepcopy(o.state_dict()) for o in optimizers]
    warm_loader = DistributedTokenLoader(h.train_files, rank, world_size, device)
    for _ in range(h.warmup_steps):
        train_step(warm_loader)
    base_model.load_state_dict(snapshot)
    for o, s in zip(optimizers, opt_snapshots):
        o.load_state_dict(s)
    del warm_loader

    ema = {k: v.detach().float().clone() for k, v in base_model.state_dict().items()}
    loader = DistributedTokenLoader(h.train_files, rank, world_size, device)
    budget_ms = 1000.0 * h.max_wallclock_seconds
    t_start = time.perf_counter()
    step = 0
    while step < h.iterations:
        elapsed_ms = 1000.0 * (time.perf_counter() - t_start)
        warmdown_ms = h.warmdown_iters * elapsed_ms / max(step, 1)
        lr_scale = min(1.0, max(budget_ms - elapsed_ms, 0.0) / max(warmdown_ms, 1e-9))
        mom_frac = min(step / h.muon_momentum_warmup_steps, 1.0)
        for g in opt_muon.param_groups:
            g["momentum"] = h.muon_momentum_warmup_start + mom_frac * (h.muon_momentum - h.muon_momentum_warmup_start)
        for o in optimizers:
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * lr_scale
        train_loss = train_step(loader)
        with torch.no_grad():
            for k, v in base_model.state_dict().items():
                ema[k].mul_(h.ema_decay).add_(v.float(), alpha=1 - h.ema_decay)
        step += 1
        elapsed_ms = 1000.0 * (time.perf_counter() - t_start)
        if step % h.train_log_every == 0 or step <= 5:
            log0(f"step:{step}/{h.iterations} train_loss:{train_loss.item():.4f} train_time:{elapsed_ms:.0f}ms step_avg:{elapsed_ms / step:.2f}ms")
        stop = torch.tensor(float(elapsed_ms >= budget_ms), device=device)
        if distributed:
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        if stop.item() > 0:
            log0(f"stopping_early: wallclock_cap train_time:{elapsed_ms:.0f}ms step:{step}/{h.iterations}")
            break
    base_model.load_state_dict({k: v.to(base_model.state_dict()[k].dtype) for k, v in ema.items()})
    log0(f"peak memory allocated: {torch.cuda.max_memory_allocated() >> 20} MiB")
    code_bytes = len(code.encode("utf-8"))
    if master:
        n_bytes = serialize_artifact(base_model, "final_model.int6.ptz")
        log0(f"Serialized model int6+lzma: {n_bytes} bytes")
        log0(f"Code size: {code_bytes} bytes")
        log0(f"Total submission size int6+lzma: {n_bytes + code_bytes} bytes")
    if distributed:
        dist.barrier()
    eval_model = GPT(h).to(device)
    eval_model.load_state_dict(load_artifact("final_model.int6.ptz"), strict=True)

    t_eval = time.perf_counter()
    sw_loss, sw_bpb = eval_val_sliding(h, eval_model, rank, world_size, device, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut)
    log0(f"final_int6_sliding_window val_loss:{sw_loss:.4f} val_bpb:{sw_bpb:.4f} stride:{h.eval_stride} eval_time:{1000 * (time.perf_counter() - t_eval):.0f}ms")
    log0(f"final_int6_sliding_window_exact val_loss:{sw_loss:.8f} val_bpb:{sw_bpb:.8f}")
    if h.ttt_enabled:
        t_ttt = time.perf_counter()
        ttt_loss, ttt_bpb = eval_val_sliding_ttt(h, eval_model, rank, world_size, device, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut, log0)
        log0(f"legal_ttt val_loss:{ttt_loss:.4f} val_bpb:{ttt_bpb:.4f} eval_time:{1000 * (time.perf_counter() - t_ttt):.0f}ms")
        log0(f"legal_ttt_exact val_loss:{ttt_loss:.8f} val_bpb:{f"{ttt_bpb:.8f}"}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
