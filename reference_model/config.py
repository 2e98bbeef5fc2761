"""Configurations: the record stack ([L23] in the spec), the 9-layer baseline, and a tiny CPU twin (spec 9.1).

Plain dataclasses without torch, so the CLI can list and override them cheaply. ``Config.with_overrides`` applies
``section.field=value`` strings, the only way knobs change; there is no environment-variable layer.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core.competition import ARTIFACT_LIMIT, TRAIN_LIMIT_S

from .errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 1024
    num_layers: int = 11
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 3.0
    mlp_act: str = "leaky2"          # "relu2" (baseline, [E22]) or "leaky2" (LeakyReLU(0.5)^2, [L23])
    rope_base: float = 10000.0
    rope_dims: int = 16              # rotated dims per head; 0 = the whole head
    rope_train_len: int = 1024       # quirk Q3: NTK base rescale whenever seq_len exceeds this
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    bigram_buckets: int = 1536       # 0 disables BigramHash
    bigram_dim: int = 128
    smear: bool = True
    bos_mask: bool = True            # quirk Q11 decision: SmearGate/BigramHash do not mix across a BOS
    xsa_last: int = 4                # XSA on the last n layers
    ve_layers: tuple[int, ...] = (9, 10)
    ve_dim: int = 128
    ln_scale: bool = True            # 1/sqrt(i+1) on each block's normed inputs
    init: str = "stack"              # "stack" (orthogonal, [L23]) or "baseline" (torch default)
    bos_id: int = 1

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 2048
    batch_tokens: int = 786_432      # global tokens per optimizer step, identical for any world size
    grad_accum_world: int = 8        # grad_accum = grad_accum_world // WORLD_SIZE (emulates 8 GPUs on one)
    iterations: int = 20_000
    warmdown_iters: int = 3500
    max_wallclock_seconds: float = TRAIN_LIMIT_S   # 0 = schedule by iterations only
    warmup_steps: int = 20           # compile warm-up steps; weights, optimizers and loader are then restored
    matrix_lr: float = 0.025
    scalar_lr: float = 0.025
    tied_embed_lr: float = 0.035
    muon_momentum: float = 0.99
    muon_momentum_start: float = 0.92
    muon_momentum_warmup_steps: int = 1500
    muon_ns_steps: int = 5
    muon_wd: float = 0.04
    adam_wd: float = 0.04
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    grad_clip: float = 0.3           # quirk Q6 decision: clips the averaged gradient
    averaging: str = "ema"           # "ema", "swa" or "none" (quirk Q9: the stack applies EMA only)
    ema_decay: float = 0.997
    swa_every: int = 50
    swa_start_frac: float = 0.5
    late_qat_threshold: float = 0.0  # quirk Q8: inert in the records, so 0 (off) reproduces them
    val_loss_every: int = 0          # 0 = validate only at the end
    train_log_every: int = 200
    compile: bool = True             # torch.compile on CUDA only


@dataclass(frozen=True)
class EvalConfig:
    seq_len: int = 2048
    stride: int = 64
    batch_seqs: int = 32
    quant_passthrough_max: int = 65_536   # tensors this small stay fp16
    int6_percentiles: tuple[float, ...] = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
    artifact_limit: int = ARTIFACT_LIMIT


@dataclass(frozen=True)
class TTTConfig:
    chunk_tokens: int = 32_768       # score-first chunked TTT ([L23])
    epochs: int = 3
    lr: float = 0.002
    momentum: float = 0.9
    batch_seqs: int = 32
    grad_clip: float = 1.0
    lora_chunk: int = 256            # per-document LoRA TTT ([LORA])
    lora_window: int = 1024
    lora_batch_docs: int = 64
    lora_rank: int = 8
    lora_head_rank: int = 16
    lora_lr: float = 0.01
    lora_betas: tuple[float, float] = (0.9, 0.95)
    lora_eps: float = 1e-10
    control_epochs: int = 8          # illegal controls: [PR596] ran 8 epochs
    control_nll_scale: float = 0.98  # quirk Q12: the #596 "temperature", reproduced only in the controls


@dataclass(frozen=True)
class Config:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ttt: TTTConfig = field(default_factory=TTTConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> Config:
        """Reject knob combinations the code cannot honour, before any training starts."""
        e, t, tr, m = self.eval, self.ttt, self.train, self.model
        problems = []
        if e.seq_len % e.stride:
            problems.append(f"eval seq_len {e.seq_len} must be a multiple of the stride {e.stride}")
        if t.chunk_tokens % e.stride or t.chunk_tokens < e.seq_len:
            problems.append("ttt.chunk_tokens must be a multiple of the stride and at least one eval sequence")
        if tr.batch_tokens % (tr.grad_accum_world * tr.seq_len):
            problems.append(f"train.batch_tokens {tr.batch_tokens} must split into {tr.grad_accum_world} "
                            f"micro-batches of whole {tr.seq_len}-token sequences")
        if m.model_dim % m.num_heads or m.num_heads % m.num_kv_heads:
            problems.append("model_dim must divide into num_heads, and num_heads into num_kv_heads")
        if m.rope_dims and (m.rope_dims % 2 or m.rope_dims <= 2 or m.rope_dims > m.head_dim):
            problems.append("rope_dims must be even, above 2 and at most head_dim")
        if any(not 0 <= i < m.num_layers for i in m.ve_layers):
            problems.append(f"ve_layers {m.ve_layers} must lie in [0, {m.num_layers})")
        if problems:
            raise InputError("; ".join(problems))
        return self

    def with_overrides(self, items: list[str] | tuple[str, ...]) -> Config:
        """Apply ``section.field=value`` overrides; values parse as JSON, else as plain strings."""
        cfg = self
        for item in items:
            key, sep, raw = item.partition("=")
            section, dot, name = key.strip().partition(".")
            if not sep or not dot or section not in ("model", "train", "eval", "ttt"):
                raise InputError(f"bad override {item!r}: expected section.field=value with section in "
                                 "model, train, eval, ttt")
            sub = getattr(cfg, section)
            fields = {f.name: f for f in dataclasses.fields(sub)}
            if name not in fields:
                raise InputError(f"bad override {item!r}: {section} has no field {name!r}")
            value = _parse_value(raw, getattr(sub, name), item)
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(sub, **{name: value})})
        return cfg


def _parse_value(raw: str, current, item: str):
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InputError(f"bad override {item!r}: expected true or false")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise InputError(f"bad override {item!r}: expected a JSON list")
        return tuple(value)
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        raise InputError(f"bad override {item!r}: expected a number")
    if isinstance(current, int) and isinstance(value, float):
        if not value.is_integer():
            raise InputError(f"bad override {item!r}: expected an integer")
        value = int(value)
    return type(current)(value) if isinstance(current, (int, float, str)) else value


def record() -> Config:
    """The 11-layer stack of [L23] (26,928,220 parameters), sp1024, seq 2048, batch 786,432."""
    return Config(name="record")


def baseline() -> Config:
    """The 9-layer naive baseline of [BASE] (17,059,912 parameters), for side-by-side benchmarks."""
    model = ModelConfig(num_layers=9, mlp_mult=2.0, mlp_act="relu2", rope_dims=0, rope_train_len=1 << 30,
                        bigram_buckets=0, smear=False, xsa_last=0, ve_layers=(), ln_scale=False, init="baseline")
    train = TrainConfig(seq_len=1024, batch_tokens=524_288, warmdown_iters=1200, matrix_lr=0.04, scalar_lr=0.04,
                        tied_embed_lr=0.05, muon_momentum=0.95, muon_momentum_start=0.85,
                        muon_momentum_warmup_steps=500, muon_wd=0.0, adam_wd=0.0, grad_clip=0.0, averaging="none")
    evalc = EvalConfig(seq_len=1024, stride=64, batch_seqs=32)
    return Config(name="baseline", model=model, train=train, eval=evalc)


def tiny() -> Config:
    """Spec 9.1 at CPU scale, same code paths. Smaller than 9.1 in three knobs so that `run-reference --seeds 3`
    finishes in a few minutes on 2 cores: 4 sequences per micro-step (8 micro-steps still emulate W = 8),
    120 iterations with a 36-step warmdown, and stride 32."""
    model = ModelConfig(num_layers=5, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=3.0, rope_dims=8,
                        rope_train_len=64, bigram_buckets=128, bigram_dim=16, xsa_last=2, ve_layers=(3, 4),
                        ve_dim=16)
    train = TrainConfig(seq_len=128, batch_tokens=4096, iterations=120, warmdown_iters=36,
                        max_wallclock_seconds=0.0, warmup_steps=2, muon_momentum_warmup_steps=30, ema_decay=0.9,
                        swa_every=10, swa_start_frac=0.2, late_qat_threshold=0.15, train_log_every=40,
                        compile=False)
    evalc = EvalConfig(seq_len=128, stride=32, batch_seqs=32, quant_passthrough_max=1024)
    ttt = TTTConfig(chunk_tokens=1024, epochs=2, lr=0.005, batch_seqs=4, lora_chunk=32, lora_window=128,
                    lora_batch_docs=4, lora_rank=2, lora_head_rank=4, control_epochs=4)
    return Config(name="tiny", model=model, train=train, eval=evalc, ttt=ttt)


PRESETS = {"tiny": tiny, "record": record, "baseline": baseline}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise InputError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
