"""The sweep against an earlier commit on the same PRs, cold, in one run: how much faster, and the same results.

Each tree runs `scorefirst sweep` as a fresh process with its own empty cache (the earlier tree is `git archive`d
into a temporary folder; nothing is added to this repository's worktree list); the two runs alternate, `--rounds`
times, so both see the same stretches of a shared machine's load. Figures: wall seconds, CPU seconds of the
sweep and all its workers (user + sys, less sensitive to other processes than wall time), and the ratio of
medians. Then the two sweep JSON files are compared PR by PR: every field of every PR (verdict, rules, every
finding of every file, clusters, lineage) must be equal; the first difference is printed otherwise.

    .venv/bin/python benchmarks/bench_sweep_compare.py --repo pg.git --base 163478a --every 40 [--jobs 2]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pull_numbers(repo: str) -> list[int]:
    out = subprocess.run(["git", "-C", repo, "for-each-ref", "--format=%(refname)", "refs/pull/"],
                         capture_output=True, text=True, check=True).stdout
    return sorted({int(r.split("/")[2]) for r in out.split() if r.endswith("/head")})


def _export(commit: str, dest: Path) -> None:
    data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def _sweep(tree: Path, repo: str, prs: list[int], jobs: int, work: Path) -> dict:
    cache, out = work / "cache", work / "out"
    env = dict(os.environ, PYTHONPATH=str(tree), SCOREFIRST_CACHE_DIR=str(cache))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "sweep", "--repo", repo, "--jobs", str(jobs), "--out", str(out),
                    "--pr", *map(str, prs)], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    doc = json.loads((out / "sweep.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "doc": doc}


def _comparable(doc: dict) -> dict:
    return {"prs": doc["prs"], "clusters": doc["clusters"], "summary": doc["summary"]}


def _first_difference(a: object, b: object, where: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'base' if k in a else 'this tree'}"
            d = _first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="a clone with refs/pull/N/head")
    ap.add_argument("--base", required=True, help="the earlier commit to compare with")
    ap.add_argument("--every", type=int, default=40, help="sweep every Nth PR (by number)")
    ap.add_argument("--pr", type=int, nargs="+", help="these PRs instead of --every")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    prs = args.pr or _pull_numbers(args.repo)[::args.every]
    runs: dict[str, list[dict]] = {"base": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-compare-") as tmp:
        base = Path(tmp) / "tree"
        _export(args.base, base)
        for r in range(args.rounds):
            for name, tree in (("base", base), ("now", REPO)):
                runs[name].append(_sweep(tree, args.repo, prs, args.jobs, Path(tmp) / f"{name}-{r}"))
                print(f"round {r} {name}: {runs[name][-1]['wall_s']:.1f} s wall, {runs[name][-1]['cpu_s']:.1f} "
                      f"CPU-s", flush=True)
    figures: dict = {"prs": len(prs), "jobs": args.jobs, "base": args.base, "loadavg_end": os.getloadavg()}
    for name, rs in runs.items():
        figures[name] = {"wall_s": round(statistics.median(r["wall_s"] for r in rs), 1),
                         "cpu_s": round(statistics.median(r["cpu_s"] for r in rs), 1),
                         "files": rs[0]["doc"]["summary"]["files"], "verdicts": rs[0]["doc"]["summary"]["verdicts"]}
    figures["wall_ratio"] = round(figures["now"]["wall_s"] / figures["base"]["wall_s"], 2)
    figures["cpu_ratio"] = round(figures["now"]["cpu_s"] / figures["base"]["cpu_s"], 2)
    diff = _first_difference(_comparable(runs["base"][0]["doc"]), _comparable(runs["now"][0]["doc"]))
    figures["identical"] = diff is None
    print(json.dumps(figures, indent=1))
    print(f"{len(prs)} PRs, cold, --jobs {args.jobs}: this tree / {args.base} = {figures['wall_ratio']} wall, "
          f"{figures['cpu_ratio']} CPU; results " + ("identical" if diff is None else f"DIFFER at {diff}"))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if diff is None else 1


if __name__ == "__main__":
    sys.exit(main())
