"""Throughput of the reference model on one GPU: the record stack next to the plain 9-layer baseline.

For each config, in one process and on synthetic tokens (no dataset, tokenizer or zstandard needed):
  * training tokens/s: bf16 autocast, torch.compile, grad accumulation 8 (one GPU emulating 8), timed after
    compile warm-up steps, with peak memory;
  * sliding-window eval tokens/s (stride 64, scored targets per second);
  * legal score-first TTT eval tokens/s ([L23]: 32K-token chunks, 3 SGD epochs), projected to the full
    62,021,632-token validation split on 8 GPUs;
  * per-document LoRA TTT eval tokens/s (eager).

Run from the repository root:  python benchmarks/bench_reference_gpu.py --out bench.json
CPU smoke test:                python benchmarks/bench_reference_gpu.py --configs tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_model import config as configs  # noqa: E402
from reference_model.evaluate import eval_sliding  # noqa: E402
from reference_model.model import ATTENTION_BACKEND, compile_for_eval  # noqa: E402
from reference_model.train import Trainer  # noqa: E402
from reference_model.ttt import eval_lora, eval_score_first  # noqa: E402

VAL_TOKENS_FULL = 62_021_632
RECORD_TOKENS_PER_GPU = 1.18e6  # 8xH100 record with FlashAttention-3 (spec 4.4: 786,432 tokens per 83.4 ms / 8)


class SyntheticLoader:
    """Uniform random tokens with a BOS every ~1,000 tokens, shaped like TrainLoader batches."""

    def __init__(self, vocab: int, seed: int = 0):
        self.rng, self.vocab = np.random.default_rng(seed), vocab

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum: int):
        rows = global_tokens // (seq_len * grad_accum)
        span = self.rng.integers(2, self.vocab, size=(rows, seq_len + 1))
        return span[:, :-1], span[:, 1:]


def synthetic_val(n: int, vocab: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    val = rng.integers(2, vocab, size=n).astype(np.uint16)
    val[:: 1000] = 1
    return val


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) // 2**20 if device.type == "cuda" else 0


def bench_train(cfg, device, warmup: int, steps: int) -> tuple[dict, torch.nn.Module]:
    trainer = Trainer(cfg, device, seed=0)
    loader = SyntheticLoader(cfg.model.vocab_size)
    t0 = time.perf_counter()
    for s in range(warmup):
        trainer.step(loader, s, 0.0)
    sync(device)
    compile_s = time.perf_counter() - t0
    reset_peak(device)
    t0 = time.perf_counter()
    for s in range(steps):
        loss = trainer.step(loader, warmup + s, 0.0)
    sync(device)
    dt = time.perf_counter() - t0
    tokens = steps * cfg.train.batch_tokens
    return {"tokens_per_s": tokens / dt, "step_ms": 1000 * dt / steps, "steps_timed": steps,
            "warmup_and_compile_s": compile_s, "grad_accum": trainer.grad_accum,
            "micro_batch_tokens": cfg.train.batch_tokens // trainer.grad_accum, "seq_len": cfg.train.seq_len,
            "peak_mem_mib": peak_mib(device), "final_loss": float(loss),
            "params": trainer.model.num_params()}, trainer.model


def timed_eval(fn, model, val, bytes_at, cfg, device) -> tuple[dict, float]:
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    res = fn(model, val, bytes_at, cfg)
    sync(device)
    return res, time.perf_counter() - t0


def bench_eval(cfg, model, device, eval_tokens: int, ttt_chunks: int, lora_tokens: int, out: dict,
               deadline: float, save) -> None:
    """Fills ``out`` section by section, saving after each, and skips what the deadline leaves no time for."""
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if device.type == "cuda" and cfg.train.compile:
        compile_for_eval(model)
    vocab = cfg.model.vocab_size
    warm_val = synthetic_val(cfg.eval.seq_len * 4 + 1, vocab, seed=9)
    bytes_warm = torch.ones(warm_val.size, dtype=torch.long, device=device)
    eval_sliding(model, warm_val, bytes_warm, cfg)  # compile warm-up, not timed

    val = synthetic_val(eval_tokens + 1, vocab)
    bytes_at = torch.ones(val.size, dtype=torch.long, device=device)
    res, dt = timed_eval(eval_sliding, model, val, bytes_at, cfg, device)
    windows_per_target = cfg.eval.seq_len / cfg.eval.stride
    out["sliding"] = {"scored_tokens_per_s": res["tokens"] / dt, "seconds": dt, "targets": res["tokens"],
                      "forward_tokens_per_s": res["tokens"] * windows_per_target / dt,
                      "peak_mem_mib": peak_mib(device),
                      "projected_full_val_8gpu_s": VAL_TOKENS_FULL / (8 * res["tokens"] / dt)}
    save()
    if time.perf_counter() > deadline:
        out["skipped"] = "ttt (time budget)"
        return

    ttt_val = synthetic_val(ttt_chunks * cfg.ttt.chunk_tokens + 1, vocab, seed=2)
    ttt_bytes = torch.ones(ttt_val.size, dtype=torch.long, device=device)
    warm = synthetic_val(2 * cfg.ttt.chunk_tokens + 1, vocab, seed=3)  # compiles the TTT training step
    eval_score_first(model, warm, torch.ones(warm.size, dtype=torch.long, device=device), cfg)
    model.load_state_dict(state)
    res, dt = timed_eval(eval_score_first, model, ttt_val, ttt_bytes, cfg, device)
    model.load_state_dict(state)
    out["ttt_score_first"] = {"scored_tokens_per_s": res["tokens"] / dt, "seconds": dt, "chunks": ttt_chunks,
                              "updates": res["updates"], "peak_mem_mib": peak_mib(device),
                              "projected_full_val_8gpu_s": VAL_TOKENS_FULL / (8 * res["tokens"] / dt)}
    save()
    if lora_tokens and time.perf_counter() > deadline:
        out["skipped"] = "lora (time budget)"
    elif lora_tokens:
        lora_val = synthetic_val(lora_tokens + 1, vocab, seed=4)
        lora_bytes = torch.ones(lora_val.size, dtype=torch.long, device=device)
        res, dt = timed_eval(eval_lora, model, lora_val, lora_bytes, cfg, device)
        out["ttt_lora"] = {"scored_tokens_per_s": res["tokens"] / dt, "seconds": dt,
                           "updates": res["updates"], "peak_mem_mib": peak_mib(device),
                           "projected_full_val_8gpu_s": VAL_TOKENS_FULL / (8 * res["tokens"] / dt)}
        model.load_state_dict(state)
        save()


def attention_check(device: torch.device) -> dict:
    """The model's attention at the stack's shape (48 x 2048 tokens, 8 query / 4 KV heads of 64): forward+backward
    time, and its largest deviation from an fp32 math-backend reference (the kernel comparison is in
    profile_train_step_gpu.py)."""
    if device.type != "cuda":
        return {}
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from reference_model.model import attend

    q = torch.randn(48, 2048, 8, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(48, 2048, 4, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)

    for i in range(6):
        if i == 1:
            sync(device)
            t0 = time.perf_counter()
        attend(q, k, v).sum().backward()
    sync(device)
    out = {"forward_backward_ms": 1000 * (time.perf_counter() - t0) / 5}
    small = [t[:2].detach().requires_grad_() for t in (q, k, v)]
    got = attend(*small)
    got.float().square().sum().backward()
    got_grads = [t.grad.float() for t in small]
    ref_in = [t.detach().float().requires_grad_() for t in small]
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in ref_in), is_causal=True,
                                             enable_gqa=True).transpose(1, 2)
    ref.square().sum().backward()
    out["max_abs_err_out"] = (got.float() - ref).abs().max().item()
    out["max_abs_err_grad"] = max((g - r.grad).abs().max().item() for g, r in zip(got_grads, ref_in))
    out["ref_grad_abs_max"] = max(r.grad.abs().max().item() for r in ref_in)
    return out


def environment(device: torch.device) -> dict:
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "attention_backend": ATTENTION_BACKEND, "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    for name in ("sentencepiece", "zstandard", "flash_attn"):
        try:
            __import__(name)
            env[name] = True
        except ImportError:
            env[name] = False
    return env


def table(results: dict) -> str:
    names = list(results["configs"])
    rows = [("train tokens/s", ("train", "tokens_per_s"), "{:,.0f}"),
            ("train step ms", ("train", "step_ms"), "{:,.1f}"),
            ("train peak MiB", ("train", "peak_mem_mib"), "{:,}"),
            ("compile+warmup s", ("train", "warmup_and_compile_s"), "{:,.0f}"),
            ("sliding scored tok/s", ("sliding", "scored_tokens_per_s"), "{:,.0f}"),
            ("sliding fwd tok/s", ("sliding", "forward_tokens_per_s"), "{:,.0f}"),
            ("sliding 62M on 8 GPU s", ("sliding", "projected_full_val_8gpu_s"), "{:,.0f}"),
            ("TTT scored tok/s", ("ttt_score_first", "scored_tokens_per_s"), "{:,.0f}"),
            ("TTT 62M on 8 GPU s", ("ttt_score_first", "projected_full_val_8gpu_s"), "{:,.0f}"),
            ("TTT peak MiB", ("ttt_score_first", "peak_mem_mib"), "{:,}"),
            ("LoRA TTT scored tok/s", ("ttt_lora", "scored_tokens_per_s"), "{:,.0f}"),
            ("LoRA TTT 62M on 8 GPU s", ("ttt_lora", "projected_full_val_8gpu_s"), "{:,.0f}")]
    lines = [f"{'':26}" + "".join(f"{n:>16}" for n in names)]
    for label, (section, key), fmt in rows:
        cells = []
        for n in names:
            value = results["configs"][n].get(section, {}).get(key)
            cells.append(f"{fmt.format(value) if value is not None else '-':>16}")
        lines.append(f"{label:26}" + "".join(cells))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="record,baseline")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed steps (compilation)")
    ap.add_argument("--train-steps", type=int, default=5, help="timed optimizer steps")
    ap.add_argument("--eval-tokens", type=int, default=1 << 20, help="sliding-eval targets to time")
    ap.add_argument("--ttt-chunks", type=int, default=8, help="score-first TTT chunks to time")
    ap.add_argument("--lora-tokens", type=int, default=1 << 18, help="LoRA TTT targets to time (0 = skip)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench_reference_gpu.json"))
    ap.add_argument("--time-budget", type=float, default=500.0,
                    help="seconds; later sections are skipped (and said so) once it is spent")
    args = ap.parse_args()
    start = time.perf_counter()

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = {"schema": "scorefirst.bench.reference_gpu/2", "environment": environment(device),
               "argv": sys.argv[1:], "attention": attention_check(device), "configs": {}}

    def save() -> None:
        results["elapsed_s"] = time.perf_counter() - start
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    names = args.configs.split(",")
    for i, name in enumerate(names):
        # each config gets an equal share of what is left of the budget
        deadline = time.perf_counter() + (args.time_budget - (time.perf_counter() - start)) / (len(names) - i)
        cfg = configs.preset(name)
        if args.no_compile or device.type != "cuda":
            cfg = cfg.with_overrides(["train.compile=false"])
        if device.type != "cuda":  # CPU smoke runs: small enough to finish in a minute
            cfg = cfg.with_overrides(["train.batch_tokens=4096"])
        print(f"[{name}] training ...", file=sys.stderr, flush=True)
        entry: dict = {}
        results["configs"][name] = entry
        entry["train"], model = bench_train(cfg, device, args.warmup_steps, args.train_steps)
        print(f"[{name}] train {entry['train']['tokens_per_s']:,.0f} tokens/s; evaluating ...", file=sys.stderr,
              flush=True)
        save()
        bench_eval(cfg, model, device, args.eval_tokens, args.ttt_chunks, args.lora_tokens, entry, deadline, save)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record = results["configs"].get("record")
    if record and "ttt_score_first" in record:
        results["targets"] = {
            "train_tokens_per_s_min": 1.0e6,
            "train_target_met": record["train"]["tokens_per_s"] >= 1.0e6,
            "train_vs_8xH100_record_per_gpu": record["train"]["tokens_per_s"] / RECORD_TOKENS_PER_GPU,
            "ttt_full_val_8gpu_s": record["ttt_score_first"]["projected_full_val_8gpu_s"],
            "ttt_target_met": record["ttt_score_first"]["projected_full_val_8gpu_s"] <= 600}
    save()
    print(json.dumps(results["environment"]), json.dumps(results["attention"]))
    print(table(results))
    if "targets" in results:
        print(json.dumps(results["targets"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
