"""Where a record-stack training step spends its time on one GPU, and which attention kernel to use.

In one process (synthetic tokens, no dataset needed):
  * attention alone at the stack's shape (48 x 2048 tokens, 8 query / 4 KV heads of 64), forward + backward,
    through each SDPA backend with expanded K/V, cuDNN and FlexAttention with native GQA;
  * Muon's Newton-Schulz on the stack's 66 matrices: one matrix at a time versus batched by shape;
  * each attention variant eagerly on the (B, T, H, D) views the model produces;
  * the compiled training step (grad accumulation 8) split into forward+backward and optimizer time, once per
    attention variant named in --variants (the model's own, and the alternatives below), each from a fresh compile.

Run from the repository root:  python benchmarks/profile_train_step_gpu.py --out profile.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.attention
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_model import config as configs  # noqa: E402
from reference_model import model as model_mod  # noqa: E402
from reference_model.muon import newton_schulz  # noqa: E402
from reference_model.train import Trainer  # noqa: E402

from bench_reference_gpu import SyntheticLoader  # noqa: E402

BACKENDS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
CUDNN_FIRST = [getattr(torch.nn.attention.SDPBackend, b) for b in
               ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")]


def timed(fn, repeat: int = 10, warmup: int = 3) -> float:
    """Milliseconds per call, CUDA events around ``repeat`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def attention_kernels(device) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, T, H, KV, D = 48, 2048, 8, 4, 64
    q = torch.randn(B, H, T, D, device=device, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, KV, T, D, device=device, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    out = {}
    for name, backend in BACKENDS.items():
        for gqa in (False, True):
            def run(backend=getattr(SDPBackend, backend), gqa=gqa):
                with sdpa_kernel(backend):
                    if gqa:
                        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                    else:
                        y = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                           is_causal=True)
                y.sum().backward()
            key = f"{name}_{'gqa' if gqa else 'expanded'}_ms"
            try:
                out[key] = timed(run)
            except RuntimeError as e:
                out[key] = f"unavailable: {str(e).splitlines()[0][:120]}"
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, T, T, device=device)
        flex = torch.compile(flex_attention)
        out["flex_gqa_ms"] = timed(lambda: flex(q, k, v, block_mask=mask, enable_gqa=True).sum().backward())
    except Exception as e:  # noqa: BLE001 - a missing or failing kernel is a figure, not a crash
        out["flex_gqa_ms"] = f"unavailable: {str(e).splitlines()[0][:120]}"
    flops = 4 * B * T * T * H * D / 2 * 3.5  # causal forward, backward ~2.5x
    out["tflops_at_1ms"] = flops / 1e9
    return out


def muon_kernels(cfg, device) -> dict:
    from reference_model.model import GPT

    model = GPT(cfg.model).to(device)
    mats = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2]
    grads = [torch.randn_like(p) for p in mats]
    shapes: dict = {}
    for g in grads:
        shapes.setdefault(g.shape, []).append(g)
    one = timed(lambda: [newton_schulz(g) for g in grads])
    batched = timed(lambda: [newton_schulz(torch.stack(gs)) for gs in shapes.values()])
    return {"matrices": len(mats), "shapes": len(shapes), "per_matrix_ms": one, "batched_ms": batched}


def cudnn_gqa(q, k, v):
    """cuDNN first with native GQA, on the model's (B, T, H, D) views."""
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(CUDNN_FIRST, set_priority=True):
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
    return y.transpose(1, 2)


def cudnn_contiguous(q, k, v):
    """cuDNN first with native GQA, on heads-major contiguous copies of q, k and v."""
    from torch.nn.attention import sdpa_kernel

    q, k, v = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    with sdpa_kernel(CUDNN_FIRST, set_priority=True):
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return y.transpose(1, 2)


def train_split(cfg, device, variant: str, steps: int) -> dict:
    """Fresh compile with ``variant`` as the model's attention, warm-up, then ``steps`` steps with a sync between
    accumulation and the optimizers."""
    torch._dynamo.reset()
    model_mod.attend = VARIANTS[variant]
    trainer = Trainer(cfg, device, seed=0)
    loader = SyntheticLoader(cfg.model.vocab_size)
    t0 = time.perf_counter()
    for s in range(2):
        trainer.step(loader, s, 0.0)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    fwd_bwd, opt = 0.0, 0.0
    for s in range(steps):
        t0 = time.perf_counter()
        trainer.accumulate(loader)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        trainer.apply(2 + s, 0.0)
        torch.cuda.synchronize()
        fwd_bwd, opt = fwd_bwd + t1 - t0, opt + time.perf_counter() - t1
    step_s = (fwd_bwd + opt) / steps
    res = {"compile_s": compile_s, "fwd_bwd_ms": 1000 * fwd_bwd / steps, "optimizer_ms": 1000 * opt / steps,
           "step_ms": 1000 * step_s, "tokens_per_s": cfg.train.batch_tokens / step_s}
    if variant == "model":
        res["top_kernels"] = kernel_profile(trainer, loader)
    return res


def kernel_profile(trainer, loader, top: int = 25) -> list:
    """GPU time per kernel over one training step, largest first: [name, ms, calls, share of the step]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        trainer.step(loader, 10, 0.0)
        torch.cuda.synchronize()
    rows = [(e.key, e.self_device_time_total / 1000, e.count) for e in prof.key_averages()]
    rows = [r for r in rows if r[1] > 0]
    total = sum(r[1] for r in rows)
    rows.sort(key=lambda r: -r[1])
    return [[name[:90], round(ms, 2), calls, round(ms / total, 4)] for name, ms, calls in rows[:top]]


VARIANTS = {"model": model_mod.attend, "cudnn_gqa": cudnn_gqa, "cudnn_contiguous": cudnn_contiguous}


def layouts(device) -> dict:
    """Each variant, eager, on (B, T, H, D) views as the model produces them (not contiguous heads-major)."""
    B, T = 48, 2048
    q = torch.randn(B, T, 8 * 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(B, T, 2 * 4 * 64, device=device, dtype=torch.bfloat16, requires_grad=True)

    def run(fn):
        k, v = kv.view(B, T, 2, 4, 64).unbind(2)
        fn(q.view(B, T, 8, 64), k, v).sum().backward()
    return {f"{name}_ms": timed(lambda fn=fn: run(fn)) for name, fn in VARIANTS.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="attention variants to train with")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("profile_train_step_gpu.json"))
    args = ap.parse_args()
    device = torch.device("cuda")
    cfg = configs.preset("record")
    res = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(device)}
    res["attention"] = attention_kernels(device)
    print(json.dumps(res["attention"], indent=1), flush=True)
    res["muon"] = muon_kernels(cfg, device)
    print(json.dumps(res["muon"]), flush=True)
    res["layouts"] = layouts(device)
    print(json.dumps(res["layouts"]), flush=True)
    res["train"] = {}
    for variant in args.variants.split(","):
        try:
            res["train"][variant] = train_split(cfg, device, variant, args.steps)
        except Exception as e:  # noqa: BLE001 - record the failure, try the next variant
            res["train"][variant] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(variant, json.dumps(res["train"][variant]), flush=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        torch.cuda.empty_cache()
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
