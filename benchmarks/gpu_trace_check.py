"""The dynamic audit on a GPU machine: every synthetic submission of tests/fixtures/dynamic/ run sandboxed under the
tracer — on CUDA with bf16 autocast where there is a GPU, on the CPU otherwise — and its verdicts per condition
compared with the expected ones (tests/fixtures/dynamic/expected.json). The torchrun fixtures run as submission
folders whose README launches ``torchrun --nproc_per_node=2``: two ranks with two GPUs (nccl), one with one GPU.

    python3 benchmarks/gpu_trace_check.py --out DIR                 # from the repository root; no install needed
    python3 benchmarks/gpu_trace_check.py --out DIR --fixtures legal_score_first_ttt illegal_slot --no-probes

Needs torch, numpy and sentencepiece (not libcst, zstandard or bubblewrap: without bubblewrap the sandbox is
``unshare -n``, named explicitly because these fixtures are the project's own, trusted code; it needs root or user
namespaces). The validation split is cut from the embedded corpus, prepared
once into DIR/cache. Prints one line per fixture and writes DIR/gpu_trace_check.json: per fixture the expected and
the observed verdicts, the device the predictions were made on, the C1 probe's tolerance (and largest difference),
the launch, the isolation used, and the evidence behind every verdict that is not a PASS. Exit code 0 when every fixture got its expected verdicts, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "dynamic"


def specs() -> dict:
    return {k: v for k, v in json.loads((FIXTURES / "expected.json").read_text()).items() if not k.startswith("_")}


def submission(name: str, spec: dict, base: Path) -> Path:
    """The fixture itself, or (torchrun fixtures) a folder with it as train_gpt.py and a README that launches it."""
    if not spec.get("torchrun"):
        return FIXTURES / f"{name}.py"
    sub = base / name
    sub.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "pg_base.py", sub / "pg_base.py")
    shutil.copyfile(FIXTURES / f"{name}.py", sub / "train_gpt.py")
    (sub / "README.md").write_text("    torchrun --standalone --nproc_per_node=2 train_gpt.py\n")
    return sub


def check(name: str, spec: dict, args, gpu: bool, base: Path) -> dict:
    from harness import sandbox
    from harness.dynamic import ScriptOptions, audit_script

    probes = spec["probe"] and not args.no_probes
    expected = dict(spec["verdict"], **({} if probes else {"C1": None}))
    t0 = time.monotonic()
    a = audit_script(ScriptOptions(path=submission(name, spec, base), val_tokens=args.val_tokens,
                                   iterations=args.iterations, env=spec.get("env", {}), gpu=gpu, probes=probes,
                                   cache_dir=Path(args.cache or Path(args.out) / "cache"),
                                   isolation="bwrap" if sandbox.available("bwrap") else "unshare"))
    d = a.result.to_dict()
    got = d["verdict"]["conditions"]
    return {
        "fixture": name, "expected": expected, "got": got, "match": got == expected, "overall": d["verdict"]["overall"],
        "device": a.device.describe() if a.device else None, "probe_tolerance": a.probe_atol,
        "probe_max_abs_diff": next((p["max_abs_diff"] for p in d["probes"]), None),
        "launch": a.launch.describe() if a.launch else None, "isolation": d["sandbox"]["isolation"] if d["sandbox"]
        else None, "exit_code": a.sandbox.exit_code, "seconds": round(time.monotonic() - t0, 1),
        "evidence": [f"{c['verdict']} {c['condition']} {c['id']}: {c['message'][:300]}" for c in d["checks"]
                     if c["verdict"] != "PASS"] + [f"{p['verdict']} {p['condition']} probe: {p['probed'][:300]} -- "
                                                   f"{p['message'][:200]}" for p in d["probes"]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_trace_check.json and the prepared corpus")
    ap.add_argument("--fixtures", nargs="*", help="fixture names (default: every one in expected.json)")
    ap.add_argument("--no-probes", action="store_true", help="skip the C1 probes (a second run each)")
    ap.add_argument("--cache", help="folder of the prepared embedded corpus (default: DIR/cache)")
    ap.add_argument("--val-tokens", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=6)
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)

    import torch

    gpu = torch.cuda.is_available()
    all_specs = specs()
    names = args.fixtures or list(all_specs)
    unknown = [n for n in names if n not in all_specs]
    if unknown:
        ap.error(f"unknown fixtures {unknown}; known: {', '.join(all_specs)}")
    machine = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
               "gpus": torch.cuda.device_count(), "gpu": torch.cuda.get_device_name(0) if gpu else None}
    print(f"gpu_trace_check: torch {machine['torch']}, {machine['gpus']} GPU(s) {machine['gpu'] or ''}", flush=True)
    rows = []
    base = Path(tempfile.mkdtemp(prefix="gpu-trace-check-"))
    try:
        for name in names:
            row = check(name, all_specs[name], args, gpu, base)
            rows.append(row)
            v = " ".join(f"{c}={row['got'][c] or '-'}" for c in ("C1", "C2", "C3", "C4"))
            print(f"{'ok  ' if row['match'] else 'MISS'} {name:<30} {v}  on {row['device']}, "
                  f"probe tol {row['probe_tolerance']}, {row['seconds']} s", flush=True)
            if not row["match"]:
                print(f"     expected {row['expected']}\n     " + "\n     ".join(row["evidence"]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = {"machine": machine, "all_match": all(r["match"] for r in rows), "fixtures": rows}
    out = Path(args.out) / "gpu_trace_check.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    isolation = {r["isolation"].split(":")[0] for r in rows if r["isolation"]}
    print(f"{sum(r['match'] for r in rows)}/{len(rows)} fixtures as expected; isolation: {', '.join(isolation)}; "
          f"-> {out}")
    return 0 if report["all_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
