"""Ledger benchmark: write a ledger for the full FineWeb validation split (62,021,632 targets) the way an
evaluation would, then check it; report disk size, write and check time, and peak memory of each step.

    .venv/bin/python benchmarks/bench_ledger.py                     # score-first chunked TTT layout
    .venv/bin/python benchmarks/bench_ledger.py --layout lora       # per-document LoRA layout (many small ranges)
    .venv/bin/python benchmarks/bench_ledger.py --positions 4000000 # smaller

Layouts (synthetic NLL, real event structure):
  score-first  sliding windows (stride 64, 32 windows per scoring call = 2,048 positions per SCORE event) grouped
               into 32,768-token chunks; after each chunk but the last, 3 epochs of updates reading the chunk.
  lora         documents of ~1,200 tokens, 64 per batch, 256-token chunks: one SCORE event per chunk step listing
               every active document's chunk (one range each), then one UPDATE reading their windows.
Writing and checking run in separate child processes so that each one's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = 62_021_632  # targets of the sp1024 FineWeb validation split


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """Samples /proc/self/status every 20 ms: the peak of anonymous (allocated, not file-backed) resident memory.
    Peak RSS also counts pages of the memory-mapped ledger files, which are page cache the kernel can drop."""

    def __init__(self):
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self) -> None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) / 1024)
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        self._sample()
        return self.peak


def write(path: Path, n_targets: int, layout: str) -> dict:
    from harness.ledger import LedgerWriter

    rng = np.random.default_rng(0)
    n = n_targets + 1
    bytes_total = 0
    with open(path.parent / "bytes_at.i16", "wb") as f:  # a synthetic byte table, written in blocks
        for a in range(0, n, 1 << 22):
            block = rng.integers(1, 6, size=min(1 << 22, n - a), dtype=np.int16)
            if a == 0:
                block[0] = 0
            bytes_total += int(block.sum(dtype=np.int64))
            f.write(block.tobytes())
    mem = AnonPeak()
    t0 = time.perf_counter()
    w = LedgerWriter(path, positions=n)
    w.meta(event="begin", mode=layout, n_tokens=n, first_position=1, last_position=n - 1)
    loss_sum = 0.0
    version = 0
    if layout == "score-first":
        chunk, per_event = 32_768, 2_048
        n_chunks = math.ceil(n_targets / chunk)
        for k in range(n_chunks):
            a, b = 1 + k * chunk, min(1 + (k + 1) * chunk, n)
            for s in range(a, b, per_event):
                e = min(s + per_event, b)
                nll = rng.random(e - s, dtype=np.float32) * 6
                loss_sum += float(nll.sum(dtype=np.float64))
                w.score((s, e), nll, version)
            if k < n_chunks - 1:
                for _ in range(3):
                    version += 1
                    w.update((a - 1, b), ["blocks.*", "tok_emb.weight"], version)
    else:
        doc_len, batch, ch = 1_200, 64, 256
        starts = np.arange(0, n - 1, doc_len)
        for bi in range(0, starts.size, batch):
            docs = [(int(s), min(int(s) + doc_len, n - 1)) for s in starts[bi : bi + batch]]
            n_ch = max(math.ceil((e - s) / ch) for s, e in docs)
            for c in range(n_ch):
                pos, read = [], []
                for s, e in docs:
                    lo, hi = s + 1 + c * ch, min(s + 1 + (c + 1) * ch, e + 1)
                    if lo < hi:
                        pos.append(np.arange(lo, hi))
                        if hi < e + 1:
                            read.append(np.arange(max(s + 1, hi - 1024), hi))
                p = np.concatenate(pos)
                nll = rng.random(p.size, dtype=np.float32) * 6
                loss_sum += float(nll.sum(dtype=np.float64))
                w.score(p, nll, version)
                if read:
                    version += 1
                    w.update(np.concatenate(read), [f"lora/doc{i}" for i in range(len(read))], version)
    val_loss = loss_sum / n_targets
    w.meta(event="end", val_loss=val_loss, val_bpb=loss_sum / (bytes_total * math.log(2)), loss_sum=loss_sum,
           tokens=n_targets, bytes=bytes_total)
    w.close()
    return {"write_seconds": time.perf_counter() - t0, "write_peak_rss_mb": peak_rss_mb(),
            "write_peak_anon_mb": mem.stop()}


def check(path: Path) -> dict:
    from harness.checks import build_timeline, check_ledger
    from harness.ledger import Ledger

    mem = AnonPeak()
    t0 = time.perf_counter()
    led = Ledger(path)
    bytes_at = np.memmap(path.parent / "bytes_at.i16", dtype=np.int16, mode="r")
    out = check_ledger(led, bytes_at=bytes_at)
    tl = build_timeline(led, out.violations)
    return {"check_seconds": time.perf_counter() - t0, "check_peak_rss_mb": peak_rss_mb(),
            "check_peak_anon_mb": mem.stop(),
            "verdicts": {c.id: c.verdict for c in out.checks}, "events": len(led.events),
            "ranges": len(led.ranges), "timeline_items": len(tl.events),
            "reconstructed_bpb": out.reconstructed["val_bpb"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=FULL, help="validation targets (default: the full split)")
    ap.add_argument("--layout", choices=["score-first", "lora"], default="score-first")
    ap.add_argument("--dir", help="where to write (default: a temporary folder, removed afterwards)")
    ap.add_argument("--step", choices=["write", "check"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        res = write(Path(args.dir), args.positions, args.layout) if args.step == "write" else check(Path(args.dir))
        print(json.dumps(res))
        return 0
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    path = base / "ledger"
    try:
        res = {"positions": args.positions, "layout": args.layout}
        for step in ("write", "check"):
            out = subprocess.run([sys.executable, __file__, "--step", step, "--dir", str(path),
                                  "--positions", str(args.positions), "--layout", args.layout],
                                 capture_output=True, text=True, check=True)
            res.update(json.loads(out.stdout.strip().splitlines()[-1]))
        size = sum(p.stat().st_size for p in path.iterdir())
        res["ledger_mb"] = size / 2**20
        res["bytes_per_position"] = size / args.positions
        print(f"layout {res['layout']}: {res['positions']:,} positions, {res['events']:,} events, "
              f"{res['ranges']:,} ranges")
        print(f"  ledger on disk   {res['ledger_mb']:.1f} MB ({res['bytes_per_position']:.2f} bytes/position)")
        for step in ("write", "check"):
            print(f"  {step:<16} {res[step + '_seconds']:.1f} s, peak anonymous memory "
                  f"{res[step + '_peak_anon_mb']:.0f} MB (peak RSS incl. mapped ledger pages "
                  f"{res[step + '_peak_rss_mb']:.0f} MB)")
        print(f"  verdicts         {res['verdicts']}")
        print(f"  timeline items   {res['timeline_items']}")
        print(json.dumps(res))
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
