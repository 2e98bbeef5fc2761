"""What the script tracer costs a scorer, on the CPU: one evaluation run plain and traced, alternating, in one run.

    python3 benchmarks/bench_tracer_cpu.py [--tokens 65536] [--reps 3] [--tracer DIR ...] [--calls]

The workload is a record script's scoring loop in miniature: official-layout shards (``fineweb_val_*``, so the
ids carry their provenance), a small tied-embedding transformer, sliding windows of 512 tokens with stride 64 in
batches of 32 rows under ``no_grad``, the NLL of every newly scored target summed, ``val_loss … val_bpb …``
printed; then a score-first TTT pass (score a chunk, one SGD step on it). Each ``--tracer`` is a folder holding a
tracer (``harness/tracer`` of this tree by default; pass another checkout's to compare two versions in one run).
Prints the median eval seconds of each variant and the traced/plain ratios; writes nothing else.

``--calls`` times what the tracer adds to one torch call and to one module call instead (8x8 tensors, so the
Python work is all there is: on a GPU that work is what the CPU must keep up with while kernels run), next to the
floor of any such observer: a ``TorchFunctionMode`` and a global module hook that do nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

WORKLOAD = textwrap.dedent('''
    import os, time, numpy as np, torch, torch.nn.functional as F
    torch.manual_seed(0); torch.set_num_threads(1)
    V, D, T, S, B = 1024, 128, 512, 64, 32
    val = torch.from_numpy(np.fromfile(os.environ["VAL_FILE"], dtype="<u2", offset=1024).astype(np.int64))
    emb = torch.nn.Embedding(V, D)
    blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.LayerNorm(D), torch.nn.Linear(D, 4 * D),
                                                     torch.nn.GELU(), torch.nn.Linear(4 * D, D)) for _ in range(2))
    def logits(x):
        h = emb(x)
        for b in blocks:
            h = h + b(h)
        return F.linear(h, emb.weight)
    n = val.numel() - 1
    starts = list(range(0, n - T + 1, S))
    t0 = time.perf_counter(); loss = 0.0; count = 0
    with torch.no_grad():
        for i in range(0, len(starts), B):
            ws = starts[i : i + B]
            x = torch.stack([val[w : w + T] for w in ws]); y = torch.stack([val[w + 1 : w + T + 1] for w in ws])
            nll = F.cross_entropy(logits(x).flatten(0, 1), y.flatten(), reduction="none").view(len(ws), T)
            first = [0 if w == 0 else T - S for w in ws]
            for r, f in enumerate(first):
                loss += float(nll[r, f:].sum()); count += T - f
    opt = torch.optim.SGD([*emb.parameters(), *blocks.parameters()], lr=1e-3)
    for c in range(0, n - T + 1, 8 * T):  # score-first TTT: score a chunk, then one step on it
        x, y = val[c : c + 8 * T].view(8, T), val[c + 1 : c + 8 * T + 1].view(8, T)
        with torch.no_grad():
            F.cross_entropy(logits(x).flatten(0, 1), y.flatten())
        opt.zero_grad(); F.cross_entropy(logits(x).flatten(0, 1), y.flatten()).backward(); opt.step()
    print(f"eval_seconds:{time.perf_counter() - t0:.4f}")
    print(f"final val_loss:{loss / count:.6f} val_bpb:{loss / count / 0.6931 / 3.5:.6f}")
''')


CALLS = textwrap.dedent('''
    import os, time, torch
    torch.set_num_threads(1)
    if os.environ.get("EMPTY_OBSERVER"):  # the floor: a mode and a global module hook that do nothing
        from torch.overrides import TorchFunctionMode
        class Empty(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                return func(*args, **(kwargs or {}))
        Empty().__enter__()
        torch.nn.modules.module.register_module_forward_pre_hook(lambda module, args: None)
    x, lin = torch.randn(8, 8), torch.nn.Linear(8, 8)
    def per(f, n=20000):
        f(); t = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - t) / n * 1e6
    with torch.no_grad():
        print(f"op_us:{per(lambda: x * 1.0001):.3f}")
        print(f"module_us:{per(lambda: lin(x)):.3f}")
''')


def shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, tokens.size)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def run(work: Path, val: Path, tracer: Path | None, script: str = "workload.py",
        empty: bool = False) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env.update({"VAL_FILE": str(val), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    if empty:
        env["EMPTY_OBSERVER"] = "1"
    if tracer is not None:
        npy = work / "val.npy"
        if not npy.exists():
            np.save(npy, np.fromfile(val, dtype="<u2", offset=1024))
        env.update({"PYTHONPATH": str(tracer), "SCOREFIRST_TRACE": str(work / f"trace-{time.monotonic_ns()}"),
                    "SCOREFIRST_VAL_TOKENS": str(npy), "SCOREFIRST_VOCAB": "1024",
                    "SCOREFIRST_REPO": str(tracer.parents[1])})
    p = subprocess.run([sys.executable, str(work / script)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=1800)
    if p.returncode:
        raise SystemExit(f"workload failed ({'traced' if tracer else 'plain'}): {p.stderr[-800:]}")
    out = {}
    for ln in p.stdout.splitlines():
        key, _, value = ln.partition(":")
        if key in ("eval_seconds", "op_us", "module_us"):
            out[key] = float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=65_536, help="validation targets")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tracer", action="append", type=Path, help="a tracer folder (repeatable)")
    ap.add_argument("--calls", action="store_true", help="time one torch call and one module call instead")
    args = ap.parse_args()
    tracers = [t.resolve() for t in (args.tracer or [REPO / "harness" / "tracer"])]
    work = Path(tempfile.mkdtemp(prefix="bench-tracer-"))
    (work / "workload.py").write_text(WORKLOAD)
    (work / "calls.py").write_text(CALLS)
    val = work / "fineweb_val_000000.bin"
    shard(val, np.random.default_rng(0).integers(2, 1024, size=args.tokens + 1))
    script, keys = ("calls.py", ("op_us", "module_us")) if args.calls else ("workload.py", ("eval_seconds",))
    times: dict[str, list[dict]] = {"plain": [], "empty": [], **{str(t): [] for t in tracers}}
    for _ in range(args.reps):  # alternating, so drift on a shared machine hits every variant alike
        times["plain"].append(run(work, val, None, script))
        if args.calls:
            times["empty"].append(run(work, val, None, script, empty=True))
        for t in tracers:
            times[str(t)].append(run(work, val, t, script))
    print(f"{args.tokens:,} targets, {args.reps} reps, medians" if not args.calls else f"{args.reps} reps, medians")
    plain = {k: statistics.median(r[k] for r in times["plain"]) for k in keys}
    print("  plain  " + "  ".join(f"{k} {v:.3f}" for k, v in plain.items()))
    if times["empty"]:
        med = {k: statistics.median(r[k] for r in times["empty"]) for k in keys}
        print("  empty  " + "  ".join(f"{k} {v:.3f} (x{v / plain[k]:.3f})" for k, v in med.items())
              + "  (a mode and a module hook that do nothing: the floor of observing every call)")
    for t in tracers:
        med = {k: statistics.median(r[k] for r in times[str(t)]) for k in keys}
        print("  traced " + "  ".join(f"{k} {v:.3f} (x{v / plain[k]:.3f})" for k, v in med.items()) + f"  ({t})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
