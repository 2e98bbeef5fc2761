"""Training (spec 3.4-3.6, 4.4-4.5): Muon + AdamW groups, iteration or wallclock warmdown, EMA/SWA, late QAT,
gradient accumulation that emulates 8 GPUs on one, and DDP under torchrun.

The loop mirrors the official one: validate at step 0 / every ``val_loss_every`` / the last step with the timer
paused, stop at ``iterations`` or at the first step past the wallclock cap, log in the official grammar.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from . import runlog
from .config import Config, TrainConfig
from .data import TrainLoader
from .errors import InputError
from .model import GPT, autocast
from .muon import Muon
from .progress import Progress

TOK_NAMES = ("tok_emb.weight", "bigram.embed.weight", "ve.embed.weight")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def build_optimizers(model: GPT, t: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW on embeddings, Muon on block matrices, AdamW on every other vector, scalar and projection."""
    tok, matrices, scalars = [], [], []
    for name, p in model.named_parameters():
        if name in TOK_NAMES:
            tok.append(p)
        elif name.startswith("blocks.") and p.ndim == 2:
            matrices.append(p)
        else:
            scalars.append(p)
    adam = {"betas": t.adam_betas, "eps": t.adam_eps, "weight_decay": t.adam_wd,
            "fused": next(model.parameters()).is_cuda}  # one kernel for all tensors instead of a launch per op
    opts = [torch.optim.AdamW([{"params": tok, "lr": t.tied_embed_lr, "base_lr": t.tied_embed_lr}], **adam),
            Muon([{"params": matrices, "lr": t.matrix_lr, "base_lr": t.matrix_lr}], lr=t.matrix_lr,
                 momentum=t.muon_momentum, ns_steps=t.muon_ns_steps, weight_decay=t.muon_wd),
            torch.optim.AdamW([{"params": scalars, "lr": t.scalar_lr, "base_lr": t.scalar_lr}], **adam)]
    return opts


def lr_multiplier(step: int, elapsed_ms: float, t: TrainConfig) -> float:
    """Linear warmdown to 0: by iterations, or over the last warmdown_iters steps at the measured step time."""
    if t.max_wallclock_seconds <= 0:
        start = t.iterations - t.warmdown_iters
        return (t.iterations - step) / max(t.warmdown_iters, 1) if step >= start else 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = t.warmdown_iters * step_ms
    remaining_ms = max(1000 * t.max_wallclock_seconds - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def muon_momentum(step: int, t: TrainConfig) -> float:
    frac = min(step / t.muon_momentum_warmup_steps, 1.0) if t.muon_momentum_warmup_steps else 1.0
    return (1 - frac) * t.muon_momentum_start + frac * t.muon_momentum


class WeightAverager:
    """EMA after every step (decay d, fp32 copy, no bias correction) or SWA snapshots while the lr multiplier is
    below ``swa_start_frac``; ``apply`` writes the average into the model."""

    def __init__(self, model: GPT, t: TrainConfig):
        self.kind, self.t = t.averaging, t
        self.params = [p for p in model.state_dict().values() if p.is_floating_point()]
        self.avg = [p.detach().float().clone() for p in self.params] if self.kind == "ema" else None
        self.swa_count = 0

    @torch.no_grad()
    def update(self, step: int, lr_scale: float) -> None:
        if self.kind == "ema":
            torch._foreach_lerp_(self.avg, [p.float() for p in self.params], 1 - self.t.ema_decay)
        elif self.kind == "swa" and lr_scale < self.t.swa_start_frac and step % self.t.swa_every == 0:
            if self.avg is None:
                self.avg = [p.detach().float().clone() for p in self.params]
            else:
                torch._foreach_add_(self.avg, [p.float() for p in self.params])
            self.swa_count += 1

    @torch.no_grad()
    def apply(self) -> str:
        if self.kind == "ema":
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
            return f"ema:applied decay:{self.t.ema_decay}"
        if self.kind == "swa" and self.swa_count:
            for p, a in zip(self.params, self.avg):
                p.copy_(a / self.swa_count)
            return f"swa:applied snapshots:{self.swa_count}"
        return "weight_averaging:none"


@dataclass
class TrainResult:
    model: GPT
    steps: int
    train_ms: float
    tokens_seen: int
    peak_alloc_mib: int
    peak_reserved_mib: int


class Trainer:
    """Model, optimizers and one training step; ``run`` is the whole official loop."""

    def __init__(self, cfg: Config, device: torch.device, seed: int, rank: int = 0, world: int = 1):
        self.cfg, self.t, self.device, self.rank, self.world = cfg, cfg.train, device, rank, world
        if self.t.grad_accum_world % world:
            raise InputError(f"WORLD_SIZE {world} must divide {self.t.grad_accum_world}")
        self.grad_accum = self.t.grad_accum_world // world
        seed_everything(seed)
        self.model = GPT(cfg.model).to(device)
        self.optimizers = build_optimizers(self.model, self.t)
        self.forward = self.model
        if self.t.compile and device.type == "cuda":
            self.forward = torch.compile(self.model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.forward = DDP(self.forward, device_ids=ids, broadcast_buffers=False)
        self.qat_on = False

    def step(self, loader, step: int, elapsed_ms: float) -> torch.Tensor:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean micro-batch loss."""
        loss = self.accumulate(loader)
        self.apply(step, elapsed_ms)
        return loss

    def accumulate(self, loader) -> torch.Tensor:
        """Gradients of the global batch: each micro-batch loss is scaled by 1/grad_accum."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(self.grad_accum):
            x, y = loader.next_batch(self.t.batch_tokens, self.t.seq_len, self.grad_accum)
            x = torch.from_numpy(x).to(self.device, non_blocking=True)
            y = torch.from_numpy(y).to(self.device, non_blocking=True)
            sync = micro == self.grad_accum - 1 or self.world == 1
            with (contextlib.nullcontext() if sync else self.forward.no_sync()), autocast(self.device):
                loss = self.forward(x, y)
            (loss / self.grad_accum).backward()
            total += loss.detach()
        return total / self.grad_accum

    def apply(self, step: int, elapsed_ms: float) -> None:
        """Schedules, clipping and every optimizer's step."""
        scale = lr_multiplier(step, elapsed_ms, self.t)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
                if isinstance(opt, Muon):
                    group["momentum"] = muon_momentum(step, self.t)
        if self.t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        for opt in self.optimizers:
            opt.step()
        self.last_scale = scale

    def run(self, data_path, log: Callable[[str], None], validate: Callable[[GPT], dict] | None = None,
            progress: bool = True) -> TrainResult:
        t, cuda = self.t, self.device.type == "cuda"
        if t.warmup_steps:
            initial = copy.deepcopy(self.model.state_dict())
            opt_states = [copy.deepcopy(o.state_dict()) for o in self.optimizers]
            loader = TrainLoader(data_path, self.rank, self.world)
            for s in range(t.warmup_steps):
                self.step(loader, s, 0.0)
            self.model.load_state_dict(initial)
            for o, st in zip(self.optimizers, opt_states):
                o.load_state_dict(st)
            log(f"warmup_steps:{t.warmup_steps} restored:model,optimizers,loader")
        loader = TrainLoader(data_path, self.rank, self.world)
        averager = WeightAverager(self.model, t)
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            torch.cuda.synchronize()
        train_ms, stop_after, step = 0.0, None, 0
        t0 = time.perf_counter()
        bar = Progress(t.iterations, "train", "steps", enabled=progress and self.rank == 0)
        while True:
            last = step == t.iterations or (stop_after is not None and step >= stop_after)
            due = validate is not None and (t.val_loss_every > 0 and step % t.val_loss_every == 0)
            if last or due:
                if cuda:
                    torch.cuda.synchronize()
                train_ms += 1000 * (time.perf_counter() - t0)
                if validate is not None:
                    res = validate(self.model)
                    log(runlog.val_line(step, t.iterations, res["val_loss"], res["val_bpb"], train_ms, step))
                t0 = time.perf_counter()
            if last:
                break
            elapsed = train_ms + 1000 * (time.perf_counter() - t0)
            loss = self.step(loader, step, elapsed)
            averager.update(step, self.last_scale)
            if t.late_qat_threshold > 0 and not self.qat_on and self.last_scale < t.late_qat_threshold:
                self.model.set_qat(True)
                self.qat_on = True
                log(f"late_qat:enabled step:{step + 1} lr_scale:{self.last_scale:.4f}")
            step += 1
            approx_ms = train_ms + 1000 * (time.perf_counter() - t0)
            if step <= 10 or step % max(t.train_log_every, 1) == 0 or step == t.iterations:
                log(runlog.train_line(step, t.iterations, float(loss), approx_ms, step))
            bar.update(1, postfix=f"loss {float(loss):.3f}" if step % 10 == 0 else None)
            if t.max_wallclock_seconds > 0 and stop_after is None:
                reached = torch.tensor(int(approx_ms >= 1000 * t.max_wallclock_seconds), device=self.device)
                if self.world > 1:
                    dist.all_reduce(reached, op=dist.ReduceOp.MAX)
                if reached.item():
                    stop_after = step
                    log(f"stopping_early: wallclock_cap train_time:{approx_ms:.0f}ms step:{step}/{t.iterations}")
        bar.close()
        self.model.set_qat(False)
        log(averager.apply())
        alloc = torch.cuda.max_memory_allocated(self.device) // 2**20 if cuda else 0
        reserved = torch.cuda.max_memory_reserved(self.device) // 2**20 if cuda else 0
        log(f"peak memory allocated: {alloc} MiB reserved: {reserved} MiB")
        return TrainResult(self.model, step, train_ms, step * t.batch_tokens, alloc, reserved)
