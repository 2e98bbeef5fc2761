"""The engine's speed against an earlier commit, on the same script, in one run: a check that a change did not
slow the audit (issue 11's bound: at most 20 % slower on the ~3,800-line script of bench_audit.py).

Both trees audit the same script (built from this tree's fixtures) in fresh processes that alternate, one warm-up
audit each, then one timed audit; the figure is the median of the per-pair ratios (a shared machine slows whole
stretches; each pair sees the same load).

    .venv/bin/python benchmarks/bench_audit_compare.py --base 4807e11 [--pairs 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_audit import build_script  # noqa: E402

_TIMED = ("import sys, time\nsys.setrecursionlimit(10000)\n"
          "from audits.engine import audit_source\nfrom audits.source import SourceFile\n"
          "text = open(sys.argv[1]).read()\naudit_source(SourceFile('x.py', text, ''), {})\n"
          "t = time.perf_counter(); audit_source(SourceFile('x.py', text, ''), {}); print(time.perf_counter() - t)\n")


def _time(tree: Path, script: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMED, str(script)], cwd=tree, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the earlier commit to compare with")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=3500)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            script = Path(tmp) / "script.py"
            text = build_script(args.lines)
            script.write_text(text)
            times: dict[str, list[float]] = {"base": [], "now": []}
            for _ in range(args.pairs):
                times["base"].append(_time(base, script))
                times["now"].append(_time(REPO, script))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    for name, ts in times.items():
        print(f"{name:>4}: median {statistics.median(ts):.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})")
    ratio = statistics.median(n / b for n, b in zip(times["now"], times["base"]))
    print(f"{text.count(chr(10))}-line script: this tree / {args.base} = {ratio:.2f} (median of {args.pairs} alternating pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
