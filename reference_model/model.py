"""GPT for Parameter Golf: the [L23] stack (spec 4) and, with features switched off, the 9-layer baseline (spec 3).

GQA attention with QK-RMSNorm, partial RoPE with the NTK rescale of quirk Q3, per-head query gain, XSA on the last
layers, value embeddings, relu^2 / LeakyReLU(0.5)^2 MLP, SmearGate and BigramHash (masked at BOS, quirk Q11),
U-Net skips with resid_mix, tied embeddings and a tanh logit softcap. Parameters stay fp32 and matmuls run under
bf16 autocast on GPU (quirks Q1/Q2 decided as "clean": fp32 position tables, fp32 embedding).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

try:
    from flash_attn_interface import flash_attn_func as _flash_attn  # FlashAttention-3 (Hopper)
    ATTENTION_BACKEND = "flash_attn_interface"
except ImportError:
    try:
        from flash_attn import flash_attn_func as _flash_attn  # FlashAttention-2, the optional `gpu` extra
        ATTENTION_BACKEND = "flash_attn"
    except ImportError:
        _flash_attn, ATTENTION_BACKEND = None, "sdpa"


def rms(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA, plain fp32 elsewhere (spec 9.1)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_for_eval(model: GPT) -> GPT:
    """torch.compile the adapter-free entry points that evaluation and full-model TTT use (CUDA runs)."""
    model.fast_logits = torch.compile(model.logits)
    model.fast_loss = torch.compile(model.forward)
    return model


def fake_quant_int6(w: torch.Tensor) -> torch.Tensor:
    """Late-QAT fake quantization: per-row int6 in [-32, 31] with the absolute 1/31 scale floor (quirk Q4)."""
    scale = (w.detach().abs().amax(dim=1, keepdim=True) / 31).clamp_min(1 / 31)
    return (w / scale).round().clamp(-32, 31) * scale


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention on (B, T, H, D) tensors; kv heads may be fewer than query heads (GQA)."""
    if _flash_attn is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        out = _flash_attn(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    group = q.size(2) // k.size(2)
    # On one H100 (torch 2.11) the compiled record step ran ~1% faster with K/V expanded for SDPA's flash kernel
    # than with cuDNN's native GQA, though cuDNN wins in isolation (benchmarks/profile_train_step_gpu.py).
    if q.is_cuda and group > 1:
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                       enable_gqa=k.size(2) != q.size(2))
    return y.transpose(1, 2)


class CastedLinear(nn.Linear):
    """Bias-free linear; while ``qat`` is set and training, the forward sees the int6 fake-quantized weight (STE)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.qat = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.qat and self.training:
            w = w + (fake_quant_int6(w) - w).detach()
        return F.linear(x, w)


class Rotary(nn.Module):
    """RoPE on the first ``dims`` of each head, pairing (j, j + dims/2); the base grows by
    (T / train_len)^(dims/(dims-2)) when T > train_len (quirk Q3: 10,000 -> ~22,082 at T = 2048, dims 16)."""

    def __init__(self, dims: int, base: float, train_len: int):
        super().__init__()
        self.dims, self.base, self.train_len = dims, base, train_len

    def forward(self, seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        base = self.base
        if seq_len > self.train_len:
            base = base * (seq_len / self.train_len) ** (self.dims / (self.dims - 2))
        inv_freq = base ** (-torch.arange(0, self.dims, 2, device=device, dtype=torch.float32) / self.dims)
        freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
        return freqs.cos(), freqs.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = cos.size(-1)
    a, b, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.cat([a * c + b * s, b * c - a * s, rest], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.h, self.kv, self.d = layer, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.c_q = CastedLinear(cfg.model_dim, self.h * self.d)
        self.c_k = CastedLinear(cfg.model_dim, self.kv * self.d)
        self.c_v = CastedLinear(cfg.model_dim, self.kv * self.d)
        self.proj = CastedLinear(self.h * self.d, cfg.model_dim)
        self.q_gain = nn.Parameter(torch.full((self.h,), cfg.qk_gain_init))
        self.rotary = Rotary(cfg.rope_dims or self.d, cfg.rope_base, cfg.rope_train_len)
        self.xsa = layer >= cfg.num_layers - cfg.xsa_last

    def forward(self, z: torch.Tensor, ve: torch.Tensor | None = None, lora=None) -> torch.Tensor:
        B, T, _ = z.shape
        q, k, v = self.c_q(z), self.c_k(z), self.c_v(z)
        if lora is not None:
            q, v = q + lora.q_delta(self.layer, z), v + lora.v_delta(self.layer, z)
        if ve is not None:
            v = v + ve
        q, k, v = q.view(B, T, self.h, self.d), k.view(B, T, self.kv, self.d), v.view(B, T, self.kv, self.d)
        cos, sin = self.rotary(T, z.device)
        q, k = rotate(rms(q), cos, sin), rotate(rms(k), cos, sin)
        q = q * self.q_gain.to(q.dtype)[:, None]
        y = attend(q, k, v)
        if self.xsa:  # remove each output's component along the token's own value direction
            y = y.reshape(B, T, self.kv, self.h // self.kv, self.d)
            vn = F.normalize(v, dim=-1).unsqueeze(3).to(y.dtype)
            y = y - (y * vn).sum(-1, keepdim=True) * vn
        return self.proj(y.reshape(B, T, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.mlp_mult * cfg.model_dim)
        self.up, self.down = CastedLinear(cfg.model_dim, hidden), CastedLinear(hidden, cfg.model_dim)
        self.leaky = cfg.mlp_act == "leaky2"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(z)
        h = F.leaky_relu(h, 0.5) if self.leaky else F.relu(h)
        return self.down(h.square())


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn, self.mlp = Attention(cfg, layer), MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.resid_mix = nn.Parameter(torch.stack([torch.ones(cfg.model_dim), torch.zeros(cfg.model_dim)]))
        self.ln = 1 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0

    def forward(self, h, x0, ve=None, lora=None):
        u = self.resid_mix[0] * h + self.resid_mix[1] * x0
        u = u + self.attn_scale * self.attn(rms(u) * self.ln, ve, lora)
        return u + self.mlp_scale * self.mlp(rms(u) * self.ln)


def bos_or_start(idx: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Positions whose left neighbour must not be mixed in: each row's first, and every BOS when masking."""
    start = torch.zeros_like(idx, dtype=torch.bool)
    start[:, 0] = True
    return start | (idx == cfg.bos_id) if cfg.bos_mask else start


class BigramHash(nn.Module):
    """e = scale * proj(table[((36313 * cur) xor (27191 * prev)) mod (N - 1)]); sequence starts use bucket N - 1."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n = cfg.bigram_buckets
        self.embed = nn.Embedding(self.n, cfg.bigram_dim)
        self.proj = CastedLinear(cfg.bigram_dim, cfg.model_dim)
        self.scale = nn.Parameter(torch.tensor(0.05))

    def index(self, idx: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        cur = idx.int()
        prev = F.pad(cur[:, :-1], (1, 0))
        h = torch.bitwise_xor(36313 * cur, 27191 * prev) % (self.n - 1)
        return torch.where(start, self.n - 1, h).long()

    def forward(self, idx: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return self.scale * self.proj(self.embed(self.index(idx, start)))


class SmearGate(nn.Module):
    """x_t <- (1 - sigmoid(g)) x_t + sigmoid(g) x_{t-1}, with x_{t-1} = 0 at sequence starts (and BOS)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate)
        prev = F.pad(x[:, :-1], (0, 0, 1, 0)) * (~start).unsqueeze(-1)
        return (1 - g) * x + g * prev


class ValueEmbedding(nn.Module):
    """One table shared by the VE layers: scale * proj(table[x]), added to v before the head split."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.ve_dim)
        self.proj = CastedLinear(cfg.ve_dim, cfg.num_kv_heads * cfg.head_dim)
        self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * self.proj(self.embed(idx))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.bigram = BigramHash(cfg) if cfg.bigram_buckets else None
        self.smear = SmearGate(cfg.model_dim) if cfg.smear else None
        self.ve = ValueEmbedding(cfg) if cfg.ve_layers else None
        self.ve_layer_scales = nn.Parameter(torch.ones(len(cfg.ve_layers))) if cfg.ve_layers else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.n_enc = cfg.num_layers // 2
        self.skip_weights = nn.Parameter(torch.ones(min(self.n_enc, cfg.num_layers - self.n_enc), cfg.model_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        for block in self.blocks:
            if self.cfg.init == "stack":
                for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.up):
                    nn.init.orthogonal_(lin.weight)
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.down.weight)
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.embed.weight)
            nn.init.orthogonal_(self.bigram.proj.weight)
        if self.ve is not None:
            nn.init.normal_(self.ve.embed.weight, std=0.01)
            nn.init.orthogonal_(self.ve.proj.weight)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_qat(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, CastedLinear):
                m.qat = on

    def hidden(self, idx: torch.Tensor, lora=None) -> torch.Tensor:
        start = bos_or_start(idx, self.cfg)
        x = self.tok_emb(idx)
        if self.bigram is not None:
            x = x + self.bigram(idx, start)
        x = rms(x)
        if self.smear is not None:
            x = self.smear(x, start)
        x0, ve, skips = x, self.ve(idx) if self.ve is not None else None, []
        for i, block in enumerate(self.blocks):
            if i >= self.n_enc and skips:
                x = x + self.skip_weights[i - self.n_enc] * skips.pop()
            ve_i = None
            if ve is not None and i in self.cfg.ve_layers:
                ve_i = ve * self.ve_layer_scales[self.cfg.ve_layers.index(i)]
            x = block(x, x0, ve_i, lora)
            if i < self.n_enc:
                skips.append(x)
        return rms(x)

    def logits(self, idx: torch.Tensor, lora=None) -> torch.Tensor:
        """Softcapped fp32 logits; a LoRA head delta is added before the softcap."""
        h = self.hidden(idx, lora)
        logits = F.linear(h, self.tok_emb.weight)
        if lora is not None:
            logits = logits + lora.head_delta(h)
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits.float() * (1.0 / cap))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor, lora=None, reduction: str = "mean") -> torch.Tensor:
        logits = self.logits(idx, lora)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss if reduction == "mean" else loss.view_as(targets)
