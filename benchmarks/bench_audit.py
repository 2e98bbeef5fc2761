"""Speed of the static audit, measured in one run (issue #2 targets in brackets):

1. bare libcst parse of a ~3,500-line realistic script (the yardstick), with the cyclic garbage collector paused
   as the engine runs it (and, for reference, with it running);
2. the rule engine's time over that parse, as a ratio  [engine adds <= 1 parse: ratio <= 1.0]: parse and audit
   alternate, and the ratio is the median over those pairs (other work on a shared machine slows whole
   stretches of a run; each pair sees the same load); and where the time goes (each step of the engine timed
   once by wrapping it, after a warm-up run);
3. end-to-end `python -m harness audit FILE --json out.json`, process start to exit, best of N  [<= 1.0 s], and
   what a process that only imports the audit path costs;
4. a folder of 100 scripts with jobs=1 vs jobs=2 (ratio), and cold vs warm cache.

The big script is built from the whole-script fixtures in tests/fixtures/audit/ (realistic submissions, ~600
lines each) concatenated until it passes --lines; the folder's scripts are built from the rules' embedded
examples (4 per script, every script different). Or pass your own with --script / --folder.

Reproduce:  .venv/bin/python benchmarks/bench_audit.py            (about a minute or two on 2 cores)
            .venv/bin/python benchmarks/bench_audit.py --json bench.json --repeat 3
"""
from __future__ import annotations

import argparse
import collections
import gc
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "audit"
# What `harness audit` imports before it reads a file: the CLI, the analyzer (libcst) and every rule.
IMPORT_AUDIT_PATH = "import harness.cli, audits.api, audits.engine; from audits.registry import all_rules; all_rules()"


def build_script(min_lines: int) -> str:
    """Concatenate fixture bodies (one `from __future__` import at the top) until `min_lines` is reached."""
    bodies = []
    for p in sorted(FIXTURES.glob("*.py")):
        text = p.read_text(encoding="utf-8")
        if "exec(" in text:  # packed fixtures are one long line: not representative of line counts
            continue
        bodies.append("\n".join(ln for ln in text.splitlines() if not ln.startswith("from __future__")))
    if not bodies:
        raise SystemExit(f"no fixtures found in {FIXTURES}; pass --script")
    out, n, i = ["from __future__ import annotations"], 1, 0
    while n < min_lines:
        body = bodies[i % len(bodies)]
        out.append(f"# ---- part {i + 1} ----")
        out.append(body)
        n += body.count("\n") + 2
        i += 1
    return "\n".join(out) + "\n"


def build_folder(dest: Path, count: int) -> None:
    from audits.registry import all_rules

    examples = []
    for rule in all_rules():
        for ex in list(rule.VALID) + list(rule.INVALID):
            examples.append(textwrap.dedent(ex.code).strip("\n"))
    if not examples:
        raise SystemExit("no rule examples found; pass --folder")
    for i in range(count):
        picks = [examples[(i * 4 + k) % len(examples)] for k in range(4)]
        sub = dest / f"sub{i:03d}"
        sub.mkdir(parents=True)
        (sub / "train_gpt.py").write_text(f"# script {i}\n" + "\n\n".join(picks) + "\n", encoding="utf-8")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def collector_paused(fn):
    """`fn` run as the engine runs its parse: with the cyclic garbage collector paused (see audits.engine)."""
    def run():
        was = gc.isenabled()
        gc.disable()
        try:
            fn()
        finally:
            if was:
                gc.enable()
    return run


def breakdown(src) -> dict[str, float]:
    """Seconds per engine step for one audit of `src`, by wrapping the steps where the engine looks them up."""
    from audits import engine, program
    from audits.registry import all_rules

    spent: dict[str, float] = collections.defaultdict(float)
    steps = [(engine, "precheck", "ast precheck (CPython parse)"), (engine.cst, "parse_module", "libcst parse"),
             (engine, "Positions", "positions"), (engine, "walk", "node list"),
             (program, "_index", "functions index"), (program, "_collect_config", "configuration"),
             (program, "_compute_taint", "taint"), (engine, "inactive_regions", "inactive regions"),
             (engine, "build_flows", "flows"), (engine, "parse_suppressions", "suppressions")]
    steps += [(rule, "check", "rules") for rule in all_rules()]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in steps]

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                return list(out) if inspect.isgenerator(out) else out  # time the iteration, not its creation
            finally:
                spent[label] += time.perf_counter() - t
        return wrapper

    try:
        for owner, name, label in steps:
            setattr(owner, name, timed(getattr(owner, name), label))
        t = time.perf_counter()
        engine.audit_source(src, {})
        total = time.perf_counter() - t
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
    out = {k: round(v, 3) for k, v in spent.items()}
    out["rest (exec search, hits, findings)"] = round(total - sum(spent.values()), 3)
    out["total"] = round(total, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", type=Path, help="audit this script instead of the built ~3,500-line one")
    ap.add_argument("--lines", type=int, default=3500)
    ap.add_argument("--folder", type=Path, help="use this folder instead of 100 generated scripts")
    ap.add_argument("--count", type=int, default=100, help="scripts in the generated folder")
    ap.add_argument("--repeat", type=int, default=5, help="best of N for the parse, engine and end-to-end runs")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()

    import libcst

    from audits.api import audit_paths, tool_info, tool_version
    from audits.cache import Cache
    from audits.engine import audit_source
    from audits.source import decode_source

    work = Path(tempfile.mkdtemp(prefix="scorefirst-bench-"))
    try:
        script = args.script or work / "train_gpt.py"
        if args.script is None:
            script.write_text(build_script(args.lines), encoding="utf-8")
        text = script.read_text(encoding="utf-8")
        lines = text.count("\n")
        src = decode_source(text.encode(), script.name)

        pairs = [(best(collector_paused(lambda: libcst.parse_module(text)), 1), best(lambda: audit_source(src, {}), 1))
                 for _ in range(max(args.repeat, 3))]
        parse_s = min(p for p, _ in pairs)
        audit_s = min(a for _, a in pairs)
        engine_s = max(0.0, audit_s - parse_s)
        ratio = statistics.median((a - p) / p for p, a in pairs)
        parse_gc_s = best(lambda: libcst.parse_module(text), args.repeat)
        steps = breakdown(src)

        env = dict(os.environ, PYTHONPATH=str(REPO))
        # Measure what an installed tool costs: pip compiles .pyc files at install time, so let the child
        # processes write and reuse bytecode even when this shell disables it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        out_json = work / "out.json"

        def e2e(*extra: str) -> None:
            subprocess.run([sys.executable, "-m", "harness", "audit", str(script), "--json", str(out_json),
                            "--format", "concise", "--exit-zero", *extra], env=env, cwd=work,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

        e2e_cold = best(lambda: e2e("--no-cache"), args.repeat)
        cache_env_dir = work / "cache-e2e"
        env["SCOREFIRST_CACHE_DIR"] = str(cache_env_dir)
        e2e()  # fill
        e2e_warm = best(e2e, args.repeat)
        startup = best(lambda: subprocess.run([sys.executable, "-m", "harness", "--version"], env=env, cwd=work,
                                              stdout=subprocess.DEVNULL, check=True), args.repeat)
        imports = best(lambda: subprocess.run([sys.executable, "-c", IMPORT_AUDIT_PATH], env=env, cwd=work,
                                              stdout=subprocess.DEVNULL, check=True), args.repeat)

        folder = args.folder or work / "folder"
        if args.folder is None:
            build_folder(folder, args.count)
        n_files = len(list(folder.rglob("*.py")))
        t = time.perf_counter()
        r1 = audit_paths([folder], jobs=1)
        jobs1 = time.perf_counter() - t
        t = time.perf_counter()
        r2 = audit_paths([folder], jobs=2)
        jobs2 = time.perf_counter() - t
        assert r1.to_dict() == r2.to_dict(), "parallel and serial results differ"
        cache_dir = work / "cache"
        cold_cache = Cache(cache_dir, tool_version())
        t = time.perf_counter()
        audit_paths([folder], jobs=2, cache_dir=cold_cache)
        cold = time.perf_counter() - t
        warm_cache = Cache(cache_dir, tool_version())
        t = time.perf_counter()
        audit_paths([folder], jobs=2, cache_dir=warm_cache)
        warm = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"libcst {tool_info()['libcst']}, scorefirst {tool_version()}",
        "script_lines": lines,
        "parse_s": round(parse_s, 3),
        "parse_collector_running_s": round(parse_gc_s, 3),
        "audit_source_s": round(audit_s, 3),
        "engine_over_parse_s": round(engine_s, 3),
        "engine_to_parse_ratio": round(ratio, 2),
        "engine_to_parse_ratio_of_bests": round(engine_s / parse_s, 2),
        "parse_audit_pairs_s": [[round(p, 3), round(a, 3)] for p, a in pairs],
        "engine_steps_s": steps,
        "e2e_no_cache_s": round(e2e_cold, 3),
        "e2e_warm_cache_s": round(e2e_warm, 3),
        "process_startup_s": round(startup, 3),
        "process_with_audit_imports_s": round(imports, 3),
        "folder_files": n_files,
        "folder_jobs1_s": round(jobs1, 2),
        "folder_jobs2_s": round(jobs2, 2),
        "folder_jobs1_over_jobs2": round(jobs1 / jobs2, 2) if jobs2 else None,
        "folder_cold_cache_s": round(cold, 2),
        "folder_warm_cache_s": round(warm, 3),
        "folder_warm_cache_hits": warm_cache.hits,
    }
    ok_e2e = e2e_cold <= 1.0
    ok_ratio = ratio <= 1.0
    print(f"scorefirst benchmark ({figures['machine']})")
    print(f"  script: {lines} lines; best of {args.repeat}")
    print(f"  bare libcst parse             {parse_s:8.3f} s   (collector running: {parse_gc_s:.3f} s)")
    print(f"  audit_source (parse+engine)   {audit_s:8.3f} s   engine over parse {engine_s:.3f} s"
          f" = {figures['engine_to_parse_ratio_of_bests']} x parse (best of each)")
    print(f"  engine / parse, median of {len(pairs)} alternating pairs: {ratio:.2f}"
          f"   [target <= 1.0: {'met' if ok_ratio else 'NOT met'}]")
    print("  one audit, step by step: " + ", ".join(f"{k} {v:.3f}" for k, v in steps.items()))
    print(f"  end-to-end, no cache          {e2e_cold:8.3f} s   [target <= 1.0 s: {'met' if ok_e2e else 'NOT met'}]")
    print(f"  end-to-end, warm cache        {e2e_warm:8.3f} s   (process start alone: {startup:.3f} s; "
          f"with the audit path's imports: {imports:.3f} s)")
    print(f"  folder of {n_files} scripts: jobs=1 {jobs1:.2f} s, jobs=2 {jobs2:.2f} s "
          f"(speed-up {figures['folder_jobs1_over_jobs2']}x)")
    print(f"  folder cache: cold {cold:.2f} s, warm {warm:.3f} s ({warm_cache.hits}/{n_files} hits)")
    print("  reproduce: .venv/bin/python benchmarks/bench_audit.py" + (f" --repeat {args.repeat}" if args.repeat != 5 else ""))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
