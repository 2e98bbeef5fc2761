# -*- coding: utf-8 -*-
"""SP8192 11L, loop 4-5 x2, MuonEq-R, SD-clip GPTQ int6 + brotli, pre-quant AdamW TTT.

Training stops 12 s early so the GPTQ Hessians are collected inside the 600 s. Before
quantization, 6 epochs of AdamW adapt the model (PREQUANT_TTT_*), then export and evaluate.
"""
import copy
import glob
import io
import lzma
import math
import os
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

try:
    import brotli
except ImportError:
    brotli = None
try:
    from flash_attn_interface import flash_attn_func
except ImportError:
    def flash_attn_func(q, k, v, causal=True):
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, enable_gqa=k.size(2) != q.size(2))
        return o.transpose(1, 2)


class Hyperparameters:
    data_dir = os.environ.get("DATA_DIR", "./data/")
    seed = int(os.environ.get("SEED", 1337))
    run_id = os.environ.get("RUN_ID", "sp8192")
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    datasets_dir = os.path.join(data_dir, "datasets", f"fineweb10B_sp{vocab_size}")
    train_files = os.path.join(datasets_dir, "fineweb_train_*.bin")
    val_files = os.path.join(datasets_dir, "fineweb_val_*.bin")
    tokenizer_path = os.path.join(data_dir, "tokenizers", f"fineweb_{vocab_size}_bpe.model")
    iterations = int(os.environ.get("ITERATIONS", 20000))
    warmdown_frac = float(os.environ.get("WARMDOWN_FRAC", 0.667))
    warmup_steps = int(os.environ.get("WARMUP_STEPS", 20))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 786432))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 2048))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", 2048))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    mlp_mult = float(os.environ.get("MLP_MULT", 4.0))
    rope_dims = int(os.environ.get("ROPE_DIMS", 16))
    rope_base = float(os.environ.get("ROPE_BASE", 10000.0))
    qk_gain_init = float(os.environ.get("QK_GAIN_INIT", 5.0))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    loop_start = int(os.environ.get("LOOP_START", 4))
    loop_end = int(os.environ.get("LOOP_END", 5))
    num_loops = int(os.environ.get("NUM_LOOPS", 2))
    enable_looping_at = float(os.environ.get("ENABLE_LOOPING_AT", 0.5))
    matrix_lr = float(os.environ.get("MATRIX_LR", 0.02))
    embed_lr = float(os.environ.get("EMBED_LR", 0.03))
    scalar_lr = float(os.environ.get("SCALAR_LR", 0.02))
    muon_wd = float(os.environ.get("MUON_WD", 0.085))
    embed_wd = float(os.environ.get("EMBED_WD", 0.085))
    muon_momentum = float(os.environ.get("MUON_MOMENTUM", 0.99))
    ema_decay = float(os.environ.get("EMA_DECAY", 0.997))
    grad_clip_norm = float(os.environ.get("GRAD_CLIP_NORM", 0.3))
    matrix_clip_sigmas = float(os.environ.get("MATRIX_CLIP_SIGMAS", 12.85))
    embed_clip_sigmas = float(os.environ.get("EMBED_CLIP_SIGMAS", 20.0))
    gptq_reserve_seconds = float(os.environ.get("GPTQ_RESERVE_SECONDS", 12.0))
    gptq_calib_batches = int(os.environ.get("GPTQ_CALIB_BATCHES", 64))
    prequant_ttt_enabled = bool(int(os.environ.get("PREQUANT_TTT_ENABLED", "1")))
    prequant_ttt_epochs = int(os.environ.get("PREQUANT_TTT_EPOCHS", 6))
    prequant_ttt_lr = float(os.environ.get("PREQUANT_TTT_LR", 2e-4))
    prequant_ttt_batch_seqs = int(os.environ.get("PREQUANT_TTT_BATCH_SEQS", 32))


def ns5(G: Tensor, steps: int = 5) -> Tensor:
    a, b, c = 3.4445, -4.775, 2.0315
    X = G.bfloat16() / (G.norm() + 1e-7)
    if G.size(0) > G.size(1):
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.size(0) > G.size(1) else X


class MuonEqR(torch.optim.Optimizer):
    """Muon with row-normalized Nesterov updates (MuonEq-R) and decoupled weight decay."""

    def __init__(self, params, lr, momentum, wd):
        super().__init__(params, dict(lr=lr, momentum=momentum, wd=wd))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("m", torch.zeros_like(p.grad))
                buf.mul_(g["momentum"]).add_(p.grad)
                u = p.grad + g["momentum"] * buf
                u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-7)
                o = ns5(u) * max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.mul_(1 - g["lr"] * g["wd"]).add_(o.to(p.dtype), alpha=-g["lr"])


def build_sentencepiece_luts(sp, vocab_size, device):
    base = torch.zeros(vocab_size, dtype=torch.int16)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    bound = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        bound[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        p = sp.id_to_piece(i)
        if p.startswith("\u2581"):
            space[i], p = True, p[1:]
        base[i] = len(p.encode("utf-8"))
    return base.to(device), space.to(device), bound.to(device)


def load_data_shard(f) -> Tensor:
    hdr = np.fromfile(f, dtype="<i4", count=256)
    assert hdr[0] == 20240520 and hdr[1] == 1
    return torch.from_numpy(np.fromfile(f, dtype="<u2", count=int(hdr[2]), offset=1024).astype(np.int64))


class ValidationData:
    def __init__(self, h, device):
        self.sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
        toks = torch.cat([load_data_shard(f) for f in sorted(glob.glob(h.val_files))])
        usable = (toks.numel() - 1) // h.eval_seq_len * h.eval_seq_len
        self.val_tokens = toks[: usable + 1]
        self.base_bytes_lut, self.has_leading_space_lut, self.is_boundary_token_lut = build_sentencepiece_luts(self.sp, h.vocab_size, device)

    def byte_count(self, prev: Tensor, tgt: Tensor) -> Tensor:
        extra = self.has_leading_space_lut[tgt] & ~self.is_boundary_token_lut[prev]
        return self.base_bytes_lut[tgt].double() + extra.double()


class ShuffledSequenceLoader:
    """Each rank owns shards[rank::world]; random phase + permutation of sequence starts per shard."""

    def __init__(self, h, device):
        self.L, self.device = h.train_seq_len, device
        self.world, self.rank = h.world_size, h.rank
        self.rng = np.random.Generator(np.random.PCG64(self.rank))
        self.shards = [np.memmap(f, dtype="<u2", mode="r", offset=1024) for f in sorted(glob.glob(h.train_files))[self.rank :: self.world]]
        self.state = []
        for sh in self.shards:
            phase = int(self.rng.integers(0, self.L))
            self.state.append([phase, self.rng.permutation((sh.size - phase - 1) // self.L), 0])

    def next_batch(self, batch_tokens: int, accum: int) -> tuple[Tensor, Tensor]:
        n = batch_tokens // (self.L * self.world * accum)
        left = np.array([len(s[1]) - s[2] for s in self.state], dtype=np.float64)
        rows = []
        for si in self.rng.choice(len(self.shards), size=n, p=left / left.sum()):
            phase, perm, cur = self.state[si]
            start = phase + int(perm[cur]) * self.L
            self.state[si][2] += 1
            rows.append(torch.from_numpy(self.shards[si][start : start + self.L + 1].astype(np.int64)))
        b = torch.stack(rows).to(self.device, non_blocking=True)
        return b[:, :-1], b[:, 1:]


def rms(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Attn(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.nh, self.nkv, self.hd, self.rd = h.num_heads, h.num_kv_heads, h.model_dim // h.num_heads, h.rope_dims
        self.q = CastedLinear(h.model_dim, h.model_dim, bias=False)
        self.k = CastedLinear(h.model_dim, self.nkv * self.hd, bias=False)
        self.v = CastedLinear(h.model_dim, self.nkv * self.hd, bias=False)
        self.o = CastedLinear(h.model_dim, h.model_dim, bias=False)
        nn.init.zeros_(self.o.weight)
        self.gain = nn.Parameter(torch.full((self.nh,), h.qk_gain_init))
        inv = 1.0 / h.rope_base ** (torch.arange(0, self.rd, 2, dtype=torch.float32) / self.rd)
        self.register_buffer("inv_freq", inv, persistent=False)

    def _rope(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        r = self.rd // 2
        a, b = x[..., :r], x[..., r : self.rd]
        return torch.cat([a * cos + b * sin, b * cos - a * sin, x[..., self.rd :]], -1)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q = rms(self.q(x).view(B, T, self.nh, self.hd))
        k = rms(self.k(x).view(B, T, self.nkv, self.hd))
        v = self.v(x).view(B, T, self.nkv, self.hd)
        f = torch.outer(torch.arange(T, device=x.device, dtype=self.inv_freq.dtype), self.inv_freq)
        cos, sin = f.cos()[None, :, None].to(x.dtype), f.sin()[None, :, None].to(x.dtype)
        q = self._rope(q, cos, sin) * self.gain.to(x.dtype)[:, None]
        k = self._rope(k, cos, sin)
        y = flash_attn_func(q, k, v, causal=True).reshape(B, T, self.nkv, -1, self.hd)
        vn = F.normalize(v, dim=-1)[:, :, :, None]
        y = y - (y * vn).sum(-1, keepdim=True) * vn  # XSA on every layer
        return self.o(y.reshape(B, T, D))


class Layer(nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.attn = Attn(h)
        self.fc = CastedLinear(h.model_dim, int(h.mlp_mult * h.model_dim), bias=False)
        self.proj = CastedLinear(int(h.mlp_mult * h.model_dim), h.model_dim, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.a_scale = nn.Parameter(torch.ones(h.model_dim))
        self.m_scale = nn.Parameter(torch.ones(h.model_dim))
        self.ln = 1.0 / math.sqrt(i + 1)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.a_scale.to(x.dtype) * self.attn(rms(x) * self.ln)
        return x + self.m_scale.to(x.dtype) * self.proj(F.leaky_relu(self.fc(rms(x) * self.ln), 0.5).square())


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.h = h
        self.emb = nn.Embedding(h.vocab_size, h.model_dim)
        nn.init.normal_(self.emb.weight, std=0.005)
        self.layers = nn.ModuleList([Layer(h, i) for i in range(h.num_layers)])
        n_skip = (h.num_layers + h.num_loops * (h.loop_end - h.loop_start + 1)) // 2
        self.skip_w = nn.Parameter(torch.ones(n_skip, h.model_dim))
        self.skip_g = nn.Parameter(torch.zeros(n_skip, h.model_dim))
        self.looping = False

    def order(self) -> list[int]:
        h = self.h
        base = list(range(h.num_layers))
        if not self.looping:
            return base
        rep = list(range(h.loop_start, h.loop_end + 1)) * h.num_loops
        return base[: h.loop_end + 1] + rep + base[h.loop_end + 1 :]

    def forward_hidden(self, ids: Tensor) -> Tensor:
        x = rms(self.emb(ids))
        order = self.order()
        half = len(order) // 2
        skips = []
        for j, li in enumerate(order):
            if j >= half and skips:
                k = j - half
                x = torch.lerp(self.skip_w[k].to(x.dtype) * skips.pop(), x, torch.sigmoid(self.skip_g[k]).to(x.dtype))
            x = self.layers[li](x)
            if j < half:
                skips.append(x)
        return rms(x)

    def forward_logits(self, ids: Tensor) -> Tensor:
        z = F.linear(self.forward_hidden(ids), self.emb.weight.to(torch.bfloat16))
        return self.h.logit_softcap * torch.tanh(z / self.h.logit_softcap)

    def forward(self, ids: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(self.forward_logits(ids).float().flatten(0, 1), targets.flatten())


def _hessian_hooks(model: nn.Module, store: dict) -> list:
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, CastedLinear):
            def hook(m, inp, out, key=name):
                a = inp[0].detach().float().flatten(0, -2)
                store[key] = store.get(key, 0) + a.T @ a
            hooks.append(mod.register_forward_hook(hook))
    return hooks


def gptq_quantize(W: Tensor, H: Tensor, clip_sigmas: float, qmax: int = 31, block: int = 128) -> tuple[Tensor, Tensor]:
    W, H = W.float().clone(), H.clone()
    n = W.size(1)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += 0.01 * torch.diag(H).mean() * torch.eye(n, device=H.device)
    perm = torch.argsort(torch.diag(H), descending=True)
    W, H = W[:, perm], H[perm][:, perm]
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    s = (clip_sigmas * W.std(dim=1) / qmax).clamp_min(1e-8)
    Q = torch.empty_like(W)
    for a in range(0, n, block):
        b = min(a + block, n)
        Wb, E = W[:, a:b].clone(), torch.empty(W.size(0), b - a, device=W.device)
        for j in range(b - a):
            q = (Wb[:, j] / s).round().clamp(-qmax, qmax)
            Q[:, a + j] = q
            e = (Wb[:, j] - q * s) / U[a + j, a + j]
            Wb[:, j:] -= e[:, None] * U[a + j, a + j : b][None]
            E[:, j] = e
        W[:, b:] -= E @ U[a:b, b:]
    return Q[:, torch.argsort(perm)].to(torch.int8), s.half()


def quantize_model(model: nn.Module, hessians: dict, h) -> dict:
    out = {}
    for name, t in model.state_dict().items():
        mod = name.removesuffix(".weight")
        if mod in hessians:
            q, s = gptq_quantize(t, hessians[mod], h.matrix_clip_sigmas)
            out[name] = ("q6", q.cpu(), s.cpu())
        elif name == "emb.weight":
            s = (h.embed_clip_sigmas * t.float().std(dim=1) / 127).clamp_min(1e-8)
            out[name] = ("q8", (t.float() / s[:, None]).round().clamp(-127, 127).to(torch.int8).cpu(), s.half().cpu())
        else:
            out[name] = ("fp16", t.detach().half().cpu(), None)
    return out


def _shuffle(raw: bytes) -> bytes:
    a = np.frombuffer(raw + b"\0" * (len(raw) % 2), dtype=np.uint8).reshape(-1, 2).T
    return b"BSHF" + bytes([len(raw) % 2]) + a.tobytes()


def _unshuffle(blob: bytes) -> bytes:
    pad, a = blob[4], np.frombuffer(blob[5:], dtype=np.uint8)
    raw = a.reshape(2, -1).T.tobytes()
    return raw[: len(raw) - pad]


def serialize(h, model: nn.Module, hessians: dict, path: str = "final_model.ptz") -> int:
    buf = io.BytesIO()
    torch.save(quantize_model(model, hessians, h), buf)
    raw = _shuffle(buf.getvalue())
    blob = brotli.compress(raw, quality=11) if brotli is not None else lzma.compress(raw, preset=9)
    Path(path).write_bytes(blob)
    return len(blob)


def deserialize(h, device, path: str = "final_model.ptz") -> nn.Module:
    blob = Path(path).read_bytes()
    raw = _unshuffle(brotli.decompress(blob) if brotli is not None else lzma.decompress(blob))
    sd = {k: (q.float() if kind == "fp16" else q.float() * s.float()[:, None]) for k, (kind, q, s) in torch.load(io.BytesIO(raw)).items()}
    model = GPT(h).to(device)
    model.load_state_dict(sd)
    model.looping = True
    return model


def collect_hessians(model: nn.Module, loader, h, n_batches: int) -> dict:
    store: dict = {}
    hooks = _hessian_hooks(model, store)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(n_batches):
            x, _ = loader.next_batch(h.train_batch_tokens, 8 // h.world_size)
            model.forward_logits(x)
    for hk in hooks:
        hk.remove()
    return {k: v / n_batches for k, v in store.items()}


def eval_val_sliding(h, model, val_data, device, batch_seqs: int = 32):
    L, s = h.eval_seq_len, h.eval_stride
    toks = val_data.val_tokens
    total = toks.numel() - 1
    starts = [w for w in range(0, total, s) if w + L - s < total]
    starts = starts[len(starts) * h.rank // h.world_size : len(starts) * (h.rank + 1) // h.world_size]
    acc = torch.zeros(3, dtype=torch.float64, device=device)
    model.eval()
    fwd = torch.compile(model.forward_logits, dynamic=False)
    with torch.no_grad():
        for i in range(0, len(starts), batch_seqs):
            ws = starts[i : i + batch_seqs]
            x = torch.stack([F.pad(toks[w : min(w + L, total)], (0, max(0, w + L - total))) for w in ws]).to(device)
            y = torch.stack([F.pad(toks[w + 1 : min(w + L, total) + 1], (0, max(0, w + L - total))) for w in ws]).to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                nll = F.cross_entropy(fwd(x).float().transpose(1, 2), y, reduction="none")
            for j, w in enumerate(ws):
                a, b = (0 if w == 0 else L - s), min(L, total - w)
                acc[0] += nll[j, a:b].double().sum()
                acc[1] += b - a
                acc[2] += val_data.byte_count(x[j, a:b], y[j, a:b]).sum()
    if dist.is_initialized():
        dist.all_reduce(acc)
    loss = (acc[0] / acc[1]).item()
    return loss, loss / math.log(2) * (acc[1] / acc[2]).item()


def train_model(h, base_model: nn.Module, device, log):
    model = torch.compile(base_model, dynamic=False, fullgraph=True)
    mats = [p for n, p in base_model.named_parameters() if p.ndim == 2 and n.startswith("layers.")]
    scal = [p for n, p in base_model.named_parameters() if p.ndim < 2 or n.startswith("skip_")]
    opts = [
        MuonEqR(mats, h.matrix_lr, h.muon_momentum, h.muon_wd),
        torch.optim.AdamW([base_model.emb.weight], lr=h.embed_lr, weight_decay=h.embed_wd, betas=(0.9, 0.95), fused=True),
        torch.optim.AdamW(scal, lr=h.scalar_lr, weight_decay=0.02, betas=(0.9, 0.95), fused=True),
    ]
    for o in opts:
        for g in o.param_groups:
            g["base_lr"] = g["lr"]
    accum = 8 // h.world_size
    train_loader = ShuffledSequenceLoader(h, device)
    max_wallclock_ms = 1000.0 * (h.max_wallclock_seconds - h.gptq_reserve_seconds)  # GPTQ must finish inside the 600 s

    def step_fn(frac: float) -> Tensor:
        for o in opts:
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * min(1.0, (1.0 - frac) / h.warmdown_frac)
        total = torch.zeros((), device=device)
        for _ in range(accum):
            x, y = train_loader.next_batch(h.train_batch_tokens, accum)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(x, y)
            (loss / accum).backward()
            total += loss.detach() / accum
        if h.world_size > 1:
            for p in base_model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        torch.nn.utils.clip_grad_norm_(base_model.parameters(), h.grad_clip_norm)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        return total

    if h.warmup_steps > 0:  # compile warm-up on real training batches, then roll back
        w0 = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        o0 = [copy.deepcopy(o.state_dict()) for o in opts]
        for _ in range(h.warmup_steps):
            step_fn(0.0)
        base_model.load_state_dict(w0)
        for o, s in zip(opts, o0):
            o.load_state_dict(s)
        train_loader = ShuffledSequenceLoader(h, device)
    ema = {k: v.detach().float().clone() for k, v in base_model.state_dict().items()}
    t0, step = time.perf_counter(), 0
    while step < h.iterations:
        elapsed = 1000.0 * (time.perf_counter() - t0)
        frac = elapsed / max_wallclock_ms
        if frac >= 1.0:
            log(f"stopping_early: wallclock_cap train_time:{elapsed:.0f}ms step:{step}/{h.iterations}")
            break
        if not base_model.looping and frac >= h.enable_looping_at:
            base_model.looping = True
            log(f"looping:enabled step:{step}")
        loss = step_fn(frac)
        with torch.no_grad():
            for k, v in base_model.state_dict().items():
                ema[k].lerp_(v.float(), 1.0 - h.ema_decay)
        step += 1
        if step <= 5 or step % 500 == 0:
            log(f"step:{step}/{h.iterations} train_loss:{loss.item():.4f} train_time:{elapsed:.0f}ms step_avg:{elapsed / step:.2f}ms")
    base_model.load_state_dict({k: v.to(base_model.state_dict()[k].dtype) for k, v in ema.items()})
    log(f"peak memory allocated: {torch.cuda.max_memory_allocated() >> 20} MiB")
    return train_loader


def prequant_ttt_adapt_adamw(h, base_model: nn.Module, device, val_tokens: Tensor, log) -> None:
    """AdamW TTT: fine-tune on val data BEFORE quantization."""
    opt = torch.optim.AdamW(base_model.parameters(), lr=h.prequant_ttt_lr, betas=(0.9, 0.99), weight_decay=0.0)
    L = h.train_seq_len
    n_seq = (val_tokens.numel() - 1) // L
    lo, hi = n_seq * h.rank // h.world_size, n_seq * (h.rank + 1) // h.world_size
    per_epoch = math.ceil((hi - lo) / h.prequant_ttt_batch_seqs)
    total_steps, it = h.prequant_ttt_epochs * per_epoch, 0
    base_model.train()
    for epoch in range(h.prequant_ttt_epochs):
        running = 0.0
        for s0 in range(lo, hi, h.prequant_ttt_batch_seqs):
            s1 = min(s0 + h.prequant_ttt_batch_seqs, hi)
            raw_start, raw_end = s0 * L, s1 * L + 1
            chunk = val_tokens[raw_start:raw_end].to(device)
            x, y = chunk[:-1].view(-1, L), chunk[1:].view(-1, L)
            for g in opt.param_groups:
                g["lr"] = h.prequant_ttt_lr * 0.5 * (1.0 + math.cos(math.pi * it / total_steps))
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = base_model(x, y)
            loss.backward()
            if h.world_size > 1:
                for p in base_model.parameters():
                    dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
            torch.nn.utils.clip_grad_norm_(base_model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            running += loss.item()
            it += 1
        log(f"prequant_ttt:epoch:{epoch + 1}/{h.prequant_ttt_epochs} loss:{running / max(per_epoch, 1):.4f}")
    base_model.eval()


def main():
    h = Hyperparameters()
    h.rank, h.world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    if h.world_size > 1:
        dist.init_process_group("nccl", device_id=device)
    torch.manual_seed(h.seed)
    np.random.seed(h.seed)
    os.makedirs("logs", exist_ok=True)

    def log(msg: str) -> None:
        if h.rank == 0:
            print(msg, flush=True)
            with open(f"logs/{h.run_id}.txt", "a") as fh:
                fh.write(msg + "\n")

    code = Path(__file__).read_text(encoding="utf-8")
    val_data = ValidationData(h, device)
    log(f"val_tokens:{val_data.val_tokens.numel() - 1}")
    base_model = GPT(h).to(device).bfloat16()
    for n, p in base_model.named_parameters():
        if p.ndim < 2:
            p.data = p.data.float()
    log(f"model_params:{sum(p.numel() for p in base_model.parameters())}")
    train_loader = train_model(h, base_model, device, log)
    t_q = time.perf_counter()
    hessians = collect_hessians(base_model, train_loader, h, h.gptq_calib_batches)
    log(f"gptq:hessians:{len(hessians)} time:{time.perf_counter() - t_q:.1f}s")
    pre_loss, pre_bpb = eval_val_sliding(h, base_model, val_data, device)
    log(f"pre_quant_sliding val_loss:{pre_loss:.4f} val_bpb:{pre_bpb:.4f}")
    if h.prequant_ttt_enabled:
        prequant_ttt_adapt_adamw(h, base_model, device, val_data.val_tokens, log)
    if h.rank == 0:
        n = serialize(h, base_model, hessians)
        log(f"Serialized model int6+brotli: {n} bytes")
        log(f"Total submission size int6+brotli: {n + len(code.encode('utf-8'))} bytes")
    if h.world_size > 1:
        dist.barrier()
    eval_model = deserialize(h, device)
    t0 = time.perf_counter()
    loss, bpb = eval_val_sliding(h, eval_model, val_data, device)
    log(f"final_int6_sliding_window val_loss:{loss:.4f} val_bpb:{bpb:.4f} stride:{h.eval_stride} eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log(f"final_int6_sliding_window_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")


if __name__ == "__main__":
    main()
