"""Sweep a whole competition clone twice, cold (empty cache and journal) then warm, and say where time goes.

    python benchmarks/bench_sweep.py --repo /tmp/pg.git [--pr 605 596 ...] [--jobs N] [--out result.json]

The clone needs `refs/pull/N/head` refs (`git clone --mirror`, or `git fetch origin '+refs/pull/*/head:refs/pull/*/head'`).
Both runs go through the same code as `scorefirst sweep` (select, audit in a pool, journal, sweep JSON, triage
page), in this process, so each stage can be timed. Peak memory is the largest sum of resident memory over this
process and all its descendants (workers and their git processes), sampled every 0.1 s. CPU seconds (user + sys
of this process, the workers and their git processes) say how much work a run was, whatever else loads the
machine; `analyses` is the number of per-file results the cold run wrote to the cache (the audits that ran:
copies of a file under environments that agree on what it reads are hits).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.sweep import result as sweep_result  # noqa: E402
from harness.sweep.run import Options, run  # noqa: E402
from reports.sweep_site import render_site  # noqa: E402


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


class PeakMemory:
    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _tree(me)))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_s() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def one_sweep(opts: Options, out_dir: Path) -> dict:
    stages: dict[str, float] = {}
    cpu0 = _cpu_s()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        outcome = run(opts, stream=open(os.devnull, "w"), tty=False)
        t1 = time.perf_counter()
        doc = sweep_result.build(opts, outcome)
        t2 = time.perf_counter()
        (out_dir / "sweep.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        t3 = time.perf_counter()
        render_site(doc, out_dir)
        t4 = time.perf_counter()
    cpu = _cpu_s() - cpu0
    stages.update(audit_phase=t1 - t0, analysis=t2 - t1, write_json=t3 - t2, render_site=t4 - t3)
    worker_s: dict[str, float] = {}
    for rec in outcome.records.values():
        for k, v in (rec.get("timing") or {}).items():
            worker_s[k] = worker_s.get(k, 0.0) + v
    s = doc["summary"]
    wall = t4 - t0
    return {
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 1), "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "worker_cpu_s_by_stage": {k: round(v, 1) for k, v in sorted(worker_s.items())},
        "prs": s["prs"], "audited": s["audited"], "no_records": s["no_records"], "errors": s["errors"],
        "files": s["files"], "from_journal": s["from_journal"], "clusters": s["clusters"],
        "with_lineage": s["with_lineage"], "verdicts": s["verdicts"],
        "prs_per_s": round(s["prs"] / wall, 2), "files_per_s": round(s["files"] / wall, 2),
        "peak_rss_mb": round(mem.peak_kb / 1024, 1),
        "analyses": sum(1 for _ in opts.cache_dir.rglob("v*/*/*.json")) if opts.cache_dir else None,
        "json_mb": round((out_dir / "sweep.json").stat().st_size / 1e6, 2),
        "site_mb": round((out_dir / "index.html").stat().st_size / 1e6, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--pr", type=int, nargs="+")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--keep", help="keep the cache, journal and outputs in this folder")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    cache = work / "cache"
    figures = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "loadavg_start": os.getloadavg()}, "repo": args.repo,
               "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in ("cold", "warm"):
        out = work / name
        out.mkdir(parents=True, exist_ok=True)
        opts = Options(repo=Path(args.repo), prs=args.pr, jobs=args.jobs, cache_dir=cache)
        figures[name] = one_sweep(opts, out)
        figures[name]["loadavg_after"] = os.getloadavg()
        print(f"{name}: {json.dumps(figures[name])}", flush=True)
    cold, warm = figures["cold"], figures["warm"]
    figures["warm_speedup"] = round(cold["wall_s"] / warm["wall_s"], 1) if warm["wall_s"] else None
    print(f"cold {cold['wall_s']:.0f} s, {cold['cpu_s']:.0f} CPU-s ({cold['prs_per_s']} PRs/s, "
          f"{cold['files_per_s']} files/s, {cold['analyses']} analyses, peak "
          f"{cold['peak_rss_mb']:.0f} MB); warm {warm['wall_s']:.1f} s (peak {warm['peak_rss_mb']:.0f} MB); "
          f"{figures['warm_speedup']}x")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
