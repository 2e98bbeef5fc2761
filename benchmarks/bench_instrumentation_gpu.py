"""Overhead of the instrumented evaluator on a GPU: the reference model's legal TTT evaluation (score-first chunked
TTT of the record stack, or per-document LoRA TTT) timed with and without a ledger observer, alternating in the same
process on the same GPU. Target: the instrumented run costs <= 3% more.

    python3 benchmarks/bench_instrumentation_gpu.py                      # record config, 262,144 tokens, 3 pairs
    python3 benchmarks/bench_instrumentation_gpu.py --mode lora --reps 5
    python3 benchmarks/bench_instrumentation_gpu.py --compile            # torch.compile'd eval, as run-reference

Needs only torch and numpy (synthetic tokens, random weights: the timing does not depend on what is learned). One
H100 or H200; prints a table and one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.checks import check_ledger  # noqa: E402
from harness.ledger import Ledger, LedgerObserver, LedgerWriter, disk_size  # noqa: E402
from reference_model import config as cfgmod  # noqa: E402
from reference_model.model import GPT  # noqa: E402
from reference_model.modes import MODES  # noqa: E402


def synthetic_val(n_targets: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Random tokens with a BOS (id 1) starting a document every 600-2,000 tokens."""
    rng = np.random.default_rng(seed)
    val = rng.integers(2, vocab, size=n_targets + 1).astype(np.uint16)
    pos = 0
    while pos < val.size:
        val[pos] = 1
        pos += int(rng.integers(600, 2000))
    return val


def run_once(mode: str, model: GPT, val: np.ndarray, bytes_at: torch.Tensor, cfg, ledger: Path | None) -> tuple[float, dict]:
    fn = MODES[mode].function()
    obs = LedgerObserver(LedgerWriter(ledger, positions=int(val.size))) if ledger is not None else None
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = fn(model, val, bytes_at, cfg, obs)
    if obs is not None:
        obs.close()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="score-first", choices=["score-first", "lora"])
    ap.add_argument("--config", default="record", choices=["record", "baseline"])
    ap.add_argument("--val-tokens", type=int, default=262_144)
    ap.add_argument("--reps", type=int, default=3, help="timed pairs (plain, instrumented), alternating")
    ap.add_argument("--compile", action="store_true", help="torch.compile the eval entry points (as run-reference)")
    ap.add_argument("--out", help="also write the JSON result here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    cfg = cfgmod.preset(args.config)
    val = synthetic_val(args.val_tokens, cfg.model.vocab_size)
    bytes_at = torch.randint(1, 6, (val.size,), device=dev)
    bytes_at[0] = 0
    torch.manual_seed(0)
    base = GPT(cfg.model)
    state = {k: v.clone() for k, v in base.state_dict().items()}

    def fresh() -> GPT:
        model = GPT(cfg.model).to(dev)
        model.load_state_dict(state)
        model.eval()
        if args.compile:
            from reference_model.model import compile_for_eval

            compile_for_eval(model)
        return model

    work = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · {args.config} · {args.mode} · "
          f"{args.val_tokens:,} tokens · compile {args.compile}", flush=True)
    t_warm = time.perf_counter()
    run_once(args.mode, fresh(), val, bytes_at, cfg, None)                    # warm-up: kernels, allocator, compile
    run_once(args.mode, fresh(), val, bytes_at, cfg, work / "warm-ledger")
    print(f"warm-up {time.perf_counter() - t_warm:.1f} s", flush=True)
    plain, instr, results = [], [], {}
    for r in range(args.reps):
        order = [False, True] if r % 2 == 0 else [True, False]
        for instrumented in order:
            ledger = work / f"ledger-{r}" if instrumented else None
            t, res = run_once(args.mode, fresh(), val, bytes_at, cfg, ledger)
            (instr if instrumented else plain).append(t)
            results.setdefault(instrumented, res)
            print(f"  rep {r} {'instrumented' if instrumented else 'plain       '} {t:8.3f} s  "
                  f"val_bpb {res['val_bpb']:.6f}", flush=True)
    t0 = time.perf_counter()
    led = Ledger(work / "ledger-0")
    out = check_ledger(led, bytes_at=bytes_at.cpu().numpy())
    check_s = time.perf_counter() - t0
    mp, mi = statistics.median(plain), statistics.median(instr)
    summary = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "config": args.config, "mode": args.mode,
        "val_tokens": args.val_tokens, "compile": args.compile, "reps": args.reps,
        "plain_s": plain, "instrumented_s": instr, "median_plain_s": mp, "median_instrumented_s": mi,
        "ratio": mi / mp, "overhead_pct": 100 * (mi / mp - 1), "target_pct": 3.0, "within_target": mi / mp <= 1.03,
        "val_bpb_plain": results[False]["val_bpb"], "val_bpb_instrumented": results[True]["val_bpb"],
        "ledger_events": len(led.events), "ledger_bytes": disk_size(led.path), "check_seconds": check_s,
        "checks": {c.id: c.verdict for c in out.checks},
    }
    print(f"median plain {mp:.3f} s · instrumented {mi:.3f} s · ratio {mi / mp:.4f} "
          f"({summary['overhead_pct']:+.2f}%, target <= 3%: {'met' if summary['within_target'] else 'MISSED'})")
    print(f"ledger {len(led.events):,} events, {disk_size(led.path) / 2**20:.1f} MB, checked in {check_s:.2f} s: "
          + ", ".join(f"{k} {v}" for k, v in summary["checks"].items()))
    line = json.dumps(summary)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0 if math.isfinite(mi) else 1


if __name__ == "__main__":
    sys.exit(main())
