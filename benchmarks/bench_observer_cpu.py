"""Host cost per event of the reference evaluator's ledger observer (``harness.ledger.LedgerObserver`` writing a
ledger), on the CPU: what instrumentation adds to an evaluation that is bound by its host, as per-document LoRA TTT
is (thousands of small events: one SCORE per chunk step listing every active document's chunk, one UPDATE per
trained document).

    .venv/bin/python benchmarks/bench_observer_cpu.py                         # this tree
    .venv/bin/python benchmarks/bench_observer_cpu.py --root . --root OLD     # two trees, alternating, one run

Each ``--root`` is a checkout whose ``harness/ledger.py`` is timed; rounds alternate between them in fresh child
processes and the medians are printed with their ratio to the first root. Events have the shape of the reference
LoRA evaluation (64 documents a batch, 256-token chunks, a read window of up to 1,024 tokens per update); the
tensors are CPU tensors, so the GPU's pinned copies are not in the figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent('''
    import sys, tempfile, time
    sys.path.insert(0, sys.argv[1])
    import torch
    from harness.ledger import LedgerObserver, LedgerWriter
    torch.set_num_threads(1)
    docs, chunk, steps = 64, 256, int(sys.argv[2])
    starts = torch.arange(docs) * 1200
    pos = (starts[:, None] + torch.arange(chunk)[None, :]).reshape(-1)   # one run per document
    nll = torch.rand(pos.numel())
    first = starts.tolist()
    obs = LedgerObserver(LedgerWriter(tempfile.mkdtemp() + "/ledger", positions=docs * 1200 + 1))
    t0, events, version = time.perf_counter(), 0, 0
    for step in range(steps):
        obs.on_score(pos + step * chunk, nll, version)
        for d in range(docs):
            version += 1
            a = first[d] + step * chunk
            obs.on_update((max(0, a - 768), a + chunk + 1), [f"lora/doc{d}"], version)
        events += 1 + docs
    obs.close()
    print(f"{(time.perf_counter() - t0) / events * 1e6:.3f}")
''')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", action="append", type=Path, help="a checkout to time (repeatable; default: this one)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200, help="chunk steps per run (65 events each)")
    args = ap.parse_args()
    roots = [r.resolve() for r in (args.root or [REPO])]
    times: dict[Path, list[float]] = {r: [] for r in roots}
    for _ in range(args.reps):
        for r in roots:
            p = subprocess.run([sys.executable, "-c", CHILD, str(r), str(args.steps)], capture_output=True,
                               text=True, timeout=600)
            if p.returncode:
                raise SystemExit(f"{r}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
            times[r].append(float(p.stdout.strip()))
    base = statistics.median(times[roots[0]])
    print(f"observer host cost per event (median of {args.reps}, {args.steps * 65:,} events a run):")
    for r in roots:
        m = statistics.median(times[r])
        print(f"  {str(r):60} {m:8.2f} µs   x{m / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
