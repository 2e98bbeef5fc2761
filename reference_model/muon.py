"""Muon: momentum SGD whose update is orthogonalized by a quintic Newton-Schulz iteration (spec 3.4, 4.4).

A torch.optim.Optimizer subclass, so global optimizer-step hooks see it. Matrices of one shape are orthogonalized
together as one batch (a handful of batched matmuls instead of ~15 small kernels per matrix: the step is launch-bound
at this model size). Under torch.distributed, the j-th matrix of each shape is orthogonalized on rank j mod W and the
updates are shared with one all-reduce of a flat bf16 buffer.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalize a matrix, or a batch of them (..., m, n), in bf16:
    X <- aX + (bA + cA^2)X with A = XX^T, on the wide side."""
    a, b, c = NS_COEFFS
    x = g.bfloat16()
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    for _ in range(steps):
        A = x @ x.mT
        x = a * x + (b * A + c * A @ A) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, ns_steps: int = 5, weight_decay: float = 0.0,
                 nesterov: bool = True):
        super().__init__(params, {"lr": lr, "momentum": momentum, "ns_steps": ns_steps,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    @torch.no_grad()
    def step(self, closure=None):
        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            flat = torch.zeros(sum(p.numel() for p in params), dtype=torch.bfloat16, device=params[0].device)
            views, offset = [], 0
            for p in params:
                views.append(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
            by_shape: dict[torch.Size, list[int]] = defaultdict(list)
            for i, p in enumerate(params):
                by_shape[p.shape].append(i)
            for shape, members in by_shape.items():
                mine = members[rank::world]
                if not mine:
                    continue
                grads = [params[i].grad for i in mine]
                bufs = []
                for i in mine:
                    state = self.state[params[i]]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(params[i].grad)
                    bufs.append(state["momentum_buffer"])
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, grads)
                g = torch.stack(bufs)
                if group["nesterov"]:
                    g = torch.stack(grads).add_(g, alpha=group["momentum"])
                o = newton_schulz(g, group["ns_steps"]) * max(1.0, shape[0] / shape[1]) ** 0.5
                torch._foreach_copy_([views[i] for i in mine], list(o.unbind(0)))
            if world > 1:
                dist.all_reduce(flat)
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            torch._foreach_add_(params, [v.to(p.dtype) for v, p in zip(views, params)], alpha=-group["lr"])
