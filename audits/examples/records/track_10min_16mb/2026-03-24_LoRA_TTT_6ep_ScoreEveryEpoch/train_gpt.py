# -*- coding: utf-8 -*-
"""Baseline 9L/512d + per-document LoRA TTT, 6 epochs, "score every epoch".
LM-head rank 16, Q/V rank 8, per-group LR multipliers, cosine schedule, temperature 0.98.
"""
from __future__ import annotations

import copy
import glob
import io
import math
import os
import random
import sys
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    seed = int(os.environ.get("SEED", 1337))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 524_288))
    train_log_every = int(os.environ.get("TRAIN_LOG_EVERY", 200))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    warmdown_iters = int(os.environ.get("WARMDOWN_ITERS", 1200))
    warmup_steps = int(os.environ.get("WARMUP_STEPS", 20))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 524_288))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 1024))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 9))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    mlp_mult = int(os.environ.get("MLP_MULT", 2))
    rope_base = float(os.environ.get("ROPE_BASE", 10000.0))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    qk_gain_init = float(os.environ.get("QK_GAIN_INIT", 1.5))
    tied_embed_lr = float(os.environ.get("TIED_EMBED_LR", 0.05))
    matrix_lr = float(os.environ.get("MATRIX_LR", 0.04))
    scalar_lr = float(os.environ.get("SCALAR_LR", 0.04))
    muon_momentum = float(os.environ.get("MUON_MOMENTUM", 0.95))
    muon_momentum_warmup_start = float(os.environ.get("MUON_MOMENTUM_WARMUP_START", 0.85))
    muon_momentum_warmup_steps = int(os.environ.get("MUON_MOMENTUM_WARMUP_STEPS", 500))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", 6))
    ttt_chunk_size = int(os.environ.get("TTT_CHUNK_SIZE", 256))
    ttt_eval_seq_len = int(os.environ.get("TTT_EVAL_SEQ_LEN", 1024))
    ttt_batch_size = int(os.environ.get("TTT_BATCH_SIZE", 64))
    ttt_lora_rank = int(os.environ.get("TTT_LORA_RANK", 8))
    ttt_head_rank = int(os.environ.get("TTT_HEAD_RANK", 16))
    ttt_lora_lr = float(os.environ.get("TTT_LORA_LR", 0.01))
    ttt_min_doc_len = int(os.environ.get("TTT_MIN_DOC_LEN", 512))
    ttt_temp_rescale = float(os.environ.get("TTT_TEMP_RESCALE", 0.98))
    ttt_max_eval_secs = float(os.environ.get("TTT_MAX_EVAL_SECS", 550.0))


def zeropower_via_newtonschulz5(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X = X / (X.norm() + eps)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """Nesterov momentum + Newton-Schulz orthogonalization; matrices sharded round-robin over ranks."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps))

    @torch.no_grad()
    def step(self):
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = group["params"]
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=torch.bfloat16)
            curr = 0
            for i, p in enumerate(params):
                if i % world_size == rank and p.grad is not None:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    g = zeropower_via_newtonschulz5(p.grad.add(buf, alpha=group["momentum"]), group["backend_steps"])
                    g *= max(1, g.size(0) / g.size(1)) ** 0.5
                    flat[curr : curr + p.numel()] = g.reshape(-1)
                curr += p.numel()
            if distributed:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            curr = 0
            for p in params:
                p.add_(flat[curr : curr + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                curr += p.numel()


def build_sentencepiece_luts(
    sp: spm.SentencePieceProcessor, vocab_size: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    sp_vocab_size = int(sp.vocab_size())
    table_size = max(sp_vocab_size, vocab_size)
    base_bytes_np = np.zeros((table_size,), dtype=np.int16)
    has_leading_space_np = np.zeros((table_size,), dtype=np.bool_)
    is_boundary_token_np = np.ones((table_size,), dtype=np.bool_)
    for token_id in range(sp_vocab_size):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        is_boundary_token_np[token_id] = False
        if sp.is_byte(token_id):
            base_bytes_np[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith("\u2581"):
            has_leading_space_np[token_id] = True
            piece = piece[1:]
        base_bytes_np[token_id] = len(piece.encode("utf-8"))
    return (
        torch.tensor(base_bytes_np, dtype=torch.int16, device=device),
        torch.tensor(has_leading_space_np, dtype=torch.bool, device=device),
        torch.tensor(is_boundary_token_np, dtype=torch.bool, device=device),
    )


def load_data_shard(file: Path) -> Tensor:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520 or int(header[1]) != 1:
        raise ValueError(f"Unexpected shard header for {file}")
    num_tokens = int(header[2])
    if file.stat().st_size != 1024 + 2 * num_tokens:
        raise ValueError(f"Shard size mismatch for {file}")
    return torch.from_numpy(np.fromfile(file, dtype="<u2", count=num_tokens, offset=1024).astype(np.uint16))


def load_validation_tokens(pattern: str, seq_len: int) -> Tensor:
    files = [Path(p) for p in sorted(glob.glob(pattern))]
    if not files:
        raise FileNotFoundError(f"No files found for pattern: {pattern}")
    tokens = torch.cat([load_data_shard(file) for file in files]).contiguous()
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    return tokens[: usable + 1]


class TokenStream:
    def __init__(self, pattern: str):
        self.files = [Path(p) for p in sorted(glob.glob(pattern))]
        if not self.files:
            raise FileNotFoundError(f"No files found for pattern: {pattern}")
        self.file_idx, self.pos = 0, 0
        self.tokens = load_data_shard(self.files[0])

    def take(self, n: int) -> Tensor:
        chunks: list[Tensor] = []
        while n > 0:
            if self.pos >= self.tokens.numel():
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens, self.pos = load_data_shard(self.files[self.file_idx]), 0
                continue
            k = min(n, self.tokens.numel() - self.pos)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            n -= k
        return torch.cat(chunks)


class DistributedTokenLoader:
    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = rank, world_size, device
        self.stream = TokenStream(pattern)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        span = global_tokens // (self.world_size * grad_accum_steps) + 1
        chunk = self.stream.take(span * self.world_size)
        local = chunk[self.rank * span : (self.rank + 1) * span].to(dtype=torch.int64)
        x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def eval_val(args, model, rank, world_size, device, grad_accum_steps, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut):
    seq_len = args.train_seq_len
    local_batch_seqs = max(args.val_batch_size // (world_size * grad_accum_steps) // seq_len, 1)
    total_seqs = (val_tokens.numel() - 1) // seq_len
    seq_start, seq_end = (total_seqs * rank) // world_size, (total_seqs * (rank + 1)) // world_size
    val_loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    val_token_count = torch.zeros((), device=device, dtype=torch.float64)
    val_byte_count = torch.zeros((), device=device, dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for s in range(seq_start, seq_end, local_batch_seqs):
            e = min(s + local_batch_seqs, seq_end)
            local = val_tokens[s * seq_len : e * seq_len + 1].to(device=device, dtype=torch.int64, non_blocking=True)
            x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=True):
                batch_loss = model(x, y).detach()
            val_loss_sum += batch_loss.to(torch.float64) * y.numel()
            val_token_count += y.numel()
            prev_ids, tgt_ids = x.reshape(-1), y.reshape(-1)
            token_bytes = base_bytes_lut[tgt_ids].to(dtype=torch.int16)
            token_bytes += (has_leading_space_lut[tgt_ids] & ~is_boundary_token_lut[prev_ids]).to(dtype=torch.int16)
            val_byte_count += token_bytes.to(torch.float64).sum()
    if dist.is_available() and dist.is_initialized():
        for t in (val_loss_sum, val_token_count, val_byte_count):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    val_loss = (val_loss_sum / val_token_count).item()
    model.train()
    return val_loss, val_loss / math.log(2.0) * (val_token_count.item() / val_byte_count.item())


CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")
INT8_KEEP_FLOAT_MAX_NUMEL = 65_536
INT8_CLIP_Q = 99.99984 / 100.0


def quantize_state_dict_int8(state_dict: dict[str, Tensor]):
    obj = {"quantized": {}, "scales": {}, "dtypes": {}, "passthrough": {}}
    payload = 0
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        if not t.is_floating_point() or t.numel() <= INT8_KEEP_FLOAT_MAX_NUMEL:
            keep_fp32 = any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)
            obj["passthrough"][name] = t.float() if keep_fp32 or not t.is_floating_point() else t.half()
            obj["dtypes"][name] = str(t.dtype).removeprefix("torch.")
            continue
        t32 = t.float().reshape(t.shape[0], -1)
        clip = torch.quantile(t32.abs(), INT8_CLIP_Q, dim=1)
        scale = (clip / 127.0).clamp_min(1.0 / 127.0)
        q = torch.clamp(torch.round(t32.clamp(-clip[:, None], clip[:, None]) / scale[:, None]), -127, 127)
        obj["quantized"][name] = q.to(torch.int8).reshape(t.shape)
        obj["scales"][name] = scale.half()
        obj["dtypes"][name] = str(t.dtype).removeprefix("torch.")
        payload += q.numel() + 2 * scale.numel()
    return obj, payload


def dequantize_state_dict_int8(obj) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name, q in obj["quantized"].items():
        s = obj["scales"][name].float().view(q.shape[0], *([1] * (q.ndim - 1)))
        out[name] = (q.float() * s).to(getattr(torch, obj["dtypes"][name]))
    for name, t in obj["passthrough"].items():
        out[name] = t.to(getattr(torch, obj["dtypes"][name]))
    return out


def rms(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim), persistent=False)

    def forward(self, T: int, device) -> tuple[Tensor, Tensor]:
        f = torch.outer(torch.arange(T, device=device, dtype=torch.float32), self.inv_freq.float())
        return f.cos()[None, None], f.sin()[None, None]


class CausalSelfAttention(nn.Module):
    def __init__(self, args):
        super().__init__()
        dim, self.nh, self.nkv = args.model_dim, args.num_heads, args.num_kv_heads
        self.hd = dim // self.nh
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, self.nkv * self.hd, bias=False)
        self.c_v = CastedLinear(dim, self.nkv * self.hd, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.q_gain = nn.Parameter(torch.full((self.nh,), args.qk_gain_init))
        self.rotary = Rotary(self.hd, args.rope_base)

    def forward(self, x: Tensor, q_delta: Tensor | None = None, v_delta: Tensor | None = None) -> Tensor:
        B, T, D = x.shape
        q, v = self.c_q(x), self.c_v(x)
        if q_delta is not None:
            q = q + q_delta.to(q.dtype)
        if v_delta is not None:
            v = v + v_delta.to(v.dtype)
        q = rms(q.view(B, T, self.nh, self.hd).transpose(1, 2))
        k = rms(self.c_k(x).view(B, T, self.nkv, self.hd).transpose(1, 2))
        v = v.view(B, T, self.nkv, self.hd).transpose(1, 2)
        cos, sin = self.rotary(T, x.device)
        half = self.hd // 2

        def rot(t: Tensor) -> Tensor:
            a, b = t[..., :half], t[..., half:]
            c, s = cos.to(t.dtype), sin.to(t.dtype)
            return torch.cat([a * c + b * s, b * c - a * s], -1)

        q = rot(q) * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, rot(k), v, is_causal=True, enable_gqa=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, args):
        super().__init__()
        dim = args.model_dim
        self.attn = CausalSelfAttention(args)
        self.fc = CastedLinear(dim, args.mlp_mult * dim, bias=False)
        self.mlp_proj = CastedLinear(args.mlp_mult * dim, dim, bias=False)
        nn.init.zeros_(self.mlp_proj.weight)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor, q_lora=None, v_lora=None) -> Tensor:
        m = self.resid_mix.to(x.dtype)
        x = m[0] * x + m[1] * x0
        n = rms(x)
        qd = q_lora(n) if q_lora is not None else None
        vd = v_lora(n) if v_lora is not None else None
        x = x + self.attn_scale.to(x.dtype) * self.attn(n, qd, vd)
        return x + self.mlp_scale.to(x.dtype) * self.mlp_proj(torch.relu(self.fc(rms(x))).square())


class GPT(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.softcap = args.logit_softcap
        self.tok_emb = nn.Embedding(args.vocab_size, args.model_dim)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.blocks = nn.ModuleList([Block(args) for _ in range(args.num_layers)])
        self.n_enc = args.num_layers // 2
        self.skip_weights = nn.Parameter(torch.ones(args.num_layers - self.n_enc, args.model_dim))

    def forward(self, input_ids: Tensor, target_ids: Tensor, lora=None) -> Tensor:
        """Mean loss without LoRA; per-token loss of shape (bsz, T) with a batched LoRA."""
        x = rms(self.tok_emb(input_ids))
        x0, skips = x, []
        for i, blk in enumerate(self.blocks):
            if i >= self.n_enc and skips:
                x = x + self.skip_weights[i - self.n_enc].to(x.dtype) * skips.pop()
            ql = lora.q_loras[i] if lora is not None else None
            vl = lora.v_loras[i] if lora is not None else None
            x = blk(x, x0, ql, vl)
            if i < self.n_enc:
                skips.append(x)
        x = rms(x)
        logits = F.linear(x, self.tok_emb.weight.to(x.dtype))
        if lora is not None:
            logits = logits + lora.lm_head_lora(x).to(logits.dtype)
        logits = self.softcap * torch.tanh(logits.float() / self.softcap)
        if lora is None:
            return F.cross_entropy(logits.flatten(0, 1), target_ids.flatten())
        return F.cross_entropy(logits.transpose(1, 2), target_ids, reduction="none")


class BatchedLinearLoRA(nn.Module):
    """One independent (A, B) pair per document in the batch; delta = (x A^T) B^T, B starts at 0."""

    def __init__(self, bsz: int, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.in_features = in_features
        self.A = nn.Parameter(torch.empty(bsz, rank, in_features))
        self.B = nn.Parameter(torch.zeros(bsz, out_features, rank))
        self.reset()

    def reset(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.A.uniform_(-bound, bound)
            self.B.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return (x @ self.A.transpose(1, 2).to(x.dtype)) @ self.B.transpose(1, 2).to(x.dtype)


class BatchedTTTLoRA(nn.Module):
    def __init__(self, bsz: int, model: nn.Module, rank: int, head_rank: int):
        super().__init__()
        dim, vocab = model.tok_emb.embedding_dim, model.tok_emb.num_embeddings
        self.q_loras = nn.ModuleList([BatchedLinearLoRA(bsz, dim, b.attn.c_q.out_features, rank) for b in model.blocks])
        self.v_loras = nn.ModuleList([BatchedLinearLoRA(bsz, dim, b.attn.c_v.out_features, rank) for b in model.blocks])
        self.lm_head_lora = BatchedLinearLoRA(bsz, dim, vocab, head_rank)

    def reset(self) -> None:
        for m in self.modules():
            if isinstance(m, BatchedLinearLoRA):
                m.reset()


def find_docs(all_tokens: Tensor, bos_id: int = 1) -> list[tuple[int, int]]:
    """Document i spans [BOS_i, BOS_{i+1}] inclusive; the last one runs to the end of the stream."""
    starts = (all_tokens == bos_id).nonzero().flatten().tolist()
    return [(s, (starts[i + 1] + 1) if i + 1 < len(starts) else all_tokens.numel()) for i, s in enumerate(starts)]


def chunk_window(ci: int, pred_len: int, chunk: int, window: int) -> tuple[int, int, int, int]:
    """Chunk ci covers targets [ci*chunk, min((ci+1)*chunk, pred_len)); context is the preceding window."""
    c_end = min((ci + 1) * chunk, pred_len)
    win_start = max(0, c_end - window)
    return win_start, c_end - win_start, ci * chunk - win_start, c_end - ci * chunk


def load_all_val_tokens(pattern: str) -> Tensor:
    return torch.cat([load_data_shard(Path(p)) for p in sorted(glob.glob(pattern))]).to(torch.int64)


def _build_chunk(all_tokens, batch, pred_lens, n_chunks, ci, C, W, device):
    bsz = len(batch)
    width = min((ci + 1) * C, W)
    x = torch.zeros(bsz, width, dtype=torch.int64, device=device)
    y = torch.zeros_like(x)
    cmask = torch.zeros(bsz, width, device=device)
    for j, (s, _) in enumerate(batch):
        if ci < n_chunks[j]:
            ws, wl, co, cl = chunk_window(ci, pred_lens[j], C, W)
            seg = all_tokens[s + ws : s + ws + wl + 1].to(device)
            x[j, :wl], y[j, :wl] = seg[:-1], seg[1:]
            cmask[j, co : co + cl] = 1.0
    return x, y, cmask


def eval_val_ttt_lora(args, base_model: GPT, rank: int, world_size: int, device, luts, log0) -> tuple[float, float]:
    base_bytes_lut, has_leading_space_lut, is_boundary_token_lut = luts
    C, W = args.ttt_chunk_size, args.ttt_eval_seq_len
    all_tokens = load_all_val_tokens(args.val_files)
    docs = find_docs(all_tokens)
    mine = docs[len(docs) * rank // world_size : len(docs) * (rank + 1) // world_size]
    short_docs = [d for d in mine if d[1] - d[0] < args.ttt_min_doc_len]
    long_docs = sorted((d for d in mine if d[1] - d[0] >= args.ttt_min_doc_len), key=lambda d: d[1] - d[0])
    for p in base_model.parameters():
        p.requires_grad_(False)
    base_model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_sum = torch.zeros((), dtype=torch.float64, device=device)
    byte_sum = torch.zeros((), dtype=torch.float64, device=device)

    with torch.no_grad():
        for s, e in short_docs:  # short documents: base model, one pass
            seg = all_tokens[s:e].to(device)
            x, y = seg[:-1][None], seg[1:][None]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                mean_nll = base_model(x, y)
            loss_sum += mean_nll.double() * y.numel()
            tok_sum += y.numel()
            byte_sum += (base_bytes_lut[y].double() + (has_leading_space_lut[y] & ~is_boundary_token_lut[x]).double()).sum()

    deadline = time.perf_counter() + args.ttt_max_eval_secs
    for b0 in range(0, len(long_docs), args.ttt_batch_size):
        batch = long_docs[b0 : b0 + args.ttt_batch_size]
        bsz = len(batch)
        pred_lens = [e - s - 1 for s, e in batch]
        n_chunks = [(pl + C - 1) // C for pl in pred_lens]
        if time.perf_counter() > deadline:  # fallback: base model, same windows, still rescaled
            zero_lora = BatchedTTTLoRA(bsz, base_model, 1, 1).to(device)  # B = 0: exactly the base model
            with torch.no_grad():
                for ci in range(max(n_chunks)):
                    x, y, cmask = _build_chunk(all_tokens, batch, pred_lens, n_chunks, ci, C, W, device)
                    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                        ptl = base_model(x, y, lora=zero_lora)
                    loss_sum += (ptl.float() * cmask).double().sum() * args.ttt_temp_rescale
                    tok_sum += cmask.sum()
                    byte_sum += ((base_bytes_lut[y].double() + (has_leading_space_lut[y] & ~is_boundary_token_lut[x]).double()) * cmask).sum()
            continue
        cur_lora = BatchedTTTLoRA(bsz, base_model, args.ttt_lora_rank, args.ttt_head_rank).to(device)
        groups = [
            {"params": list(cur_lora.lm_head_lora.parameters()), "lr": args.ttt_lora_lr * 2.0},
            {"params": list(cur_lora.v_loras.parameters()), "lr": args.ttt_lora_lr * 1.5},
            {"params": list(cur_lora.q_loras.parameters()), "lr": args.ttt_lora_lr * 0.5},
        ]
        cur_opt = torch.optim.Adam(groups, betas=(0.9, 0.95), eps=1e-10)
        for g in cur_opt.param_groups:
            g["base_lr"] = g["lr"]
        doc_loss = torch.zeros(bsz, dtype=torch.float64, device=device)
        doc_bytes = torch.zeros(bsz, dtype=torch.float64, device=device)
        doc_toks = torch.zeros(bsz, dtype=torch.float64, device=device)
        total_steps, it = args.ttt_epochs * max(n_chunks), 0
        for epoch in range(args.ttt_epochs):
            # score every epoch -- accumulators are overwritten each epoch, the last one is reported
            doc_loss.zero_()
            doc_bytes.zero_()
            doc_toks.zero_()
            for ci in range(max(n_chunks)):
                x, y, cmask = _build_chunk(all_tokens, batch, pred_lens, n_chunks, ci, C, W, device)
                for g in cur_opt.param_groups:
                    g["lr"] = g["base_lr"] * max(0.5 * (1 + math.cos(math.pi * it / total_steps)), 0.1)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    ptl = base_model(x, y, lora=cur_lora)
                with torch.no_grad():
                    doc_loss += (ptl.float() * cmask).sum(1).double() * args.ttt_temp_rescale
                    doc_bytes += ((base_bytes_lut[y].double() + (has_leading_space_lut[y] & ~is_boundary_token_lut[x]).double()) * cmask).sum(1)
                    doc_toks += cmask.sum(1).double()
                not_last = torch.tensor([float(ci < n - 1) for n in n_chunks], device=device)
                train_loss = (ptl.float() * cmask).sum(1) / cmask.sum(1).clamp_min(1.0) * not_last
                cur_opt.zero_grad(set_to_none=True)
                train_loss.sum().backward()
                cur_opt.step()
                it += 1
        loss_sum += doc_loss.sum()
        byte_sum += doc_bytes.sum()
        tok_sum += doc_toks.sum()
        if rank == 0 and (b0 // args.ttt_batch_size) % 20 == 0:
            log0(f"ttt_batch:{b0 // args.ttt_batch_size} docs:{b0 + bsz}/{len(long_docs)} running_bpb:{(loss_sum / byte_sum).item() / math.log(2):.4f}")
    if dist.is_available() and dist.is_initialized():
        for t in (loss_sum, tok_sum, byte_sum):
            dist.all_reduce(t)
    val_loss = (loss_sum / tok_sum).item()
    return val_loss, val_loss / math.log(2.0) * (tok_sum / byte_sum).item()


def main() -> None:
    args = Hyperparameters()
    code = Path(__file__).read_text(encoding="utf-8")
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    grad_accum_steps = 8 // world_size
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend="nccl", device_id=device)
    master_process = rank == 0
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs("logs", exist_ok=True)
    logfile = f"logs/{args.run_id}.txt"

    def log0(msg: str) -> None:
        if master_process:
            print(msg)
            with open(logfile, "a", encoding="utf-8") as f:
                print(msg, file=f)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer_path)
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)
    base_bytes_lut, has_leading_space_lut, is_boundary_token_lut = build_sentencepiece_luts(sp, args.vocab_size, device)
    log0(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={args.tokenizer_path}")
    log0(f"val_loader:shards pattern={args.val_files} tokens:{val_tokens.numel() - 1}")
    base_model = GPT(args).to(device).bfloat16()
    for name, p in base_model.named_parameters():
        if p.ndim < 2 or any(pat in name for pat in CONTROL_TENSOR_NAME_PATTERNS) or "blocks" in name:
            p.data = p.data.float()
    compiled_model = torch.compile(base_model, dynamic=False, fullgraph=True)
    model = DDP(compiled_model, device_ids=[local_rank], broadcast_buffers=False) if distributed else compiled_model

    block_params = list(base_model.blocks.named_parameters())
    matrix_params = [p for n, p in block_params if p.ndim == 2 and not any(pat in n for pat in CONTROL_TENSOR_NAME_PATTERNS)]
    scalar_params = [p for n, p in block_params if p.ndim < 2 or any(pat in n for pat in CONTROL_TENSOR_NAME_PATTERNS)]
    scalar_params.append(base_model.skip_weights)
    optimizer_tok = torch.optim.Adam([{"params": [base_model.tok_emb.weight], "lr": args.tied_embed_lr, "base_lr": args.tied_embed_lr}], betas=(0.9, 0.95), fused=True)
    optimizer_muon = Muon(matrix_params, lr=args.matrix_lr, momentum=args.muon_momentum)
    for group in optimizer_muon.param_groups:
        group["base_lr"] = args.matrix_lr
    optimizer_scalar = torch.optim.Adam([{"params": scalar_params, "lr": args.scalar_lr, "base_lr": args.scalar_lr}], betas=(0.9, 0.95), fused=True)
    optimizers = [optimizer_tok, optimizer_muon, optimizer_scalar]
    log0(f"model_params:{sum(p.numel() for p in base_model.parameters())}")
    log0(f"world_size:{world_size} grad_accum_steps:{grad_accum_steps}")
    log0(f"seed:{args.seed}")
    max_wallclock_ms = 1000.0 * args.max_wallclock_seconds if args.max_wallclock_seconds > 0 else None

    def lr_mul(step: int, elapsed_ms: float) -> float:
        if max_wallclock_ms is None:
            return min(1.0, max((args.iterations - step) / max(args.warmdown_iters, 1), 0.0))
        warmdown_ms = args.warmdown_iters * elapsed_ms / max(step, 1)
        remaining_ms = max(max_wallclock_ms - elapsed_ms, 0.0)
        return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0

    def run_train_step(x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = model(x, y)
        (loss / grad_accum_steps).backward()
        return loss.detach()
    train_loader = DistributedTokenLoader(args.train_files, rank, world_size, device)
    if args.warmup_steps > 0:
        # compile warm-up on training batches, then roll everything back
        init_state = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        init_opt = [copy.deepcopy(o.state_dict()) for o in optimizers]
        for ws in range(args.warmup_steps):
            for _ in range(grad_accum_steps):
                run_train_step(*train_loader.next_batch(args.train_batch_tokens, args.train_seq_len, grad_accum_steps))
            for o in optimizers:
                o.step()
                o.zero_grad(set_to_none=True)
            log0(f"warmup_step:{ws + 1}/{args.warmup_steps}")
        base_model.load_state_dict(init_state)
        for o, s in zip(optimizers, init_opt):
            o.load_state_dict(s)
        train_loader = DistributedTokenLoader(args.train_files, rank, world_size, device)
    training_time_ms, stop_after_step, step = 0.0, None, 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    while True:
        last_step = step == args.iterations or (stop_after_step is not None and step >= stop_after_step)
        if last_step:
            torch.cuda.synchronize()
            training_time_ms += 1000.0 * (time.perf_counter() - t0)
            val_loss, val_bpb = eval_val(args, model, rank, world_size, device, grad_accum_steps, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut)
            log0(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms")
            if stop_after_step is not None and step < args.iterations:
                log0(f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms step:{step}/{args.iterations}")
            break
        elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        scale = lr_mul(step, elapsed_ms)
        train_loss = torch.zeros((), device=device)
        for micro in range(grad_accum_steps):
            if distributed:
                model.require_backward_grad_sync = micro == grad_accum_steps - 1
            x, y = train_loader.next_batch(args.train_batch_tokens, args.train_seq_len, grad_accum_steps)
            train_loss += run_train_step(x, y) / grad_accum_steps
        frac = min(step / args.muon_momentum_warmup_steps, 1.0)
        for group in optimizer_muon.param_groups:
            group["momentum"] = (1 - frac) * args.muon_momentum_warmup_start + frac * args.muon_momentum
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
            opt.step()
            opt.zero_grad(set_to_none=True)
        step += 1
        approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        if step <= 10 or step % args.train_log_every == 0:
            log0(f"step:{step}/{args.iterations} train_loss:{train_loss.item():.4f} train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms")
        reached_cap = torch.tensor(int(max_wallclock_ms is not None and approx_ms >= max_wallclock_ms), device=device)
        if distributed:
            dist.all_reduce(reached_cap, op=dist.ReduceOp.MAX)
        if stop_after_step is None and bool(reached_cap.item()):
            stop_after_step = step
    log0(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")
    code_bytes = len(code.encode("utf-8"))
    quant_obj, payload_bytes = quantize_state_dict_int8(base_model.state_dict())
    buf = io.BytesIO()
    torch.save(quant_obj, buf)
    quant_blob = zlib.compress(buf.getvalue(), level=9)
    if master_process:
        with open("final_model.int8.ptz", "wb") as f:
            f.write(quant_blob)
        log0(f"Serialized model int8+zlib: {len(quant_blob)} bytes (payload:{payload_bytes} raw_torch:{buf.tell()})")
        log0(f"Code size: {code_bytes} bytes")
        log0(f"Total submission size int8+zlib: {len(quant_blob) + code_bytes} bytes")
    if distributed:
        dist.barrier()
    with open("final_model.int8.ptz", "rb") as f:
        quant_state = torch.load(io.BytesIO(zlib.decompress(f.read())), map_location="cpu")
    base_model.load_state_dict(dequantize_state_dict_int8(quant_state), strict=True)

    t_q = time.perf_counter()
    q_loss, q_bpb = eval_val(args, model, rank, world_size, device, grad_accum_steps, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut)
    log0(f"final_int8_zlib_roundtrip val_loss:{q_loss:.4f} val_bpb:{q_bpb:.4f} eval_time:{1000.0 * (time.perf_counter() - t_q):.0f}ms")
    t_ttt = time.perf_counter()
    ttt_loss, ttt_bpb = eval_val_ttt_lora(args, base_model, rank, world_size, device, (base_bytes_lut, has_leading_space_lut, is_boundary_token_lut), log0)
    log0(f"final_int8_ttt_lora val_loss:{ttt_loss:.4f} val_bpb:{ttt_bpb:.4f} epochs:{args.ttt_epochs} eval_time:{1000.0 * (time.perf_counter() - t_ttt):.0f}ms")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
