"""The dynamic audit on real third-party record scripts, on a GPU machine, and the tracer's cost on one of them.

    python3 benchmarks/audit_real_scripts_gpu.py audit --corpus DIR --tokenizer FILE --out DIR \
        --case PR:folder-substring ... [--case-env PR:KEY=VALUE ...] [--val-tokens N] [--iterations N] \
        [--probe-case PR] [--save-traces DIR] [--sandbox unshare]
    python3 benchmarks/audit_real_scripts_gpu.py overhead --corpus DIR --tokenizer FILE --out DIR --case PR:substr \
        [--modes eager,compiled] [--reps N] [--tracer DIR ...]

The corpus (``../shared/corpus``: one folder per PR with ``manifest.tsv`` giving each one's label and ruled rule)
is read, never copied into the project. ``audit`` writes official-format shards of synthetic tokens (documents that
start with BOS, a sparse bigram process plus a per-document topic, so training and test-time training have something
to learn) with the given SentencePiece model, then runs ``harness.dynamic.audit_script`` on each case: sandboxed,
traced, on the GPU, ITERATIONS small, with a per-case run environment (below). It prints one line per case and
writes ``OUT/real_scripts_audit.json``: the manifest's label and rule, the expected and observed verdict per
condition, the wall time, the leak magnitude, and the evidence behind every verdict that is not a PASS.

``overhead`` runs one script four times in one process on the same data — plain and traced, eager and compiled
(``TORCHDYNAMO_DISABLE`` 1 / 0; ``--modes`` picks them and their order), plain and traced alternating — and writes
``OUT/real_scripts_overhead.json`` after every run:
wall time of each run and the ``eval_time`` the script printed for each evaluation, and the traced/plain ratios.
A traced run is always eager (the tracer must see every operation; it sets ``TORCHDYNAMO_DISABLE=1`` itself), so
the "compiled" pair compares the script's own compiled run with the audit's traced run of it. Each ``--tracer``
is a repository root whose ``harness/tracer`` traces (this tree's by default; pass another checkout to compare two
tracer versions in the same run: each is one more traced run per round, and each gets its own ratios).

Needs torch, numpy and sentencepiece (no libcst: only the dynamic path runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# What each ruled rule must give (conditions not named are not asserted); C1 is only examined with the probe.
EXPECT = {
    "PG-TTT-005": {"C2": "PASS", "C3": "PASS", "C4": "PASS"},      # legal score-first TTT
    "PG-TTT-003": {"C4": "FAIL"},                                  # multi-epoch TTT that scores every epoch
    "PG-TTT-002": {"C3": "FAIL"},                                  # TTT on validation tokens before quantization
}
# Short-run settings on top of the harness's own (ITERATIONS, no warm-up, no wall-clock cap, eager): small training
# batches so a step takes well under a second, lzma where a script can choose its compressor, and, for a script that
# stacks SLOT on its pre-quant TTT, SLOT off, so the run is about the TTT it is ruled on.
RUN_ENV = {"TRAIN_BATCH_TOKENS": "65536", "VAL_BATCH_SIZE": "131072", "TRAIN_LOG_EVERY": "1", "COMPRESSOR": "lzma",
           "SLOT_ENABLED": "0", "TTT_ENABLED": "1", "WARMDOWN_ITERS": "2"}
EVAL_TIME = re.compile(r"^(\S+).*?\beval_time[:=]\s*([0-9.]+)\s*ms")


def manifest(corpus: Path) -> dict[str, dict]:
    with open(corpus / "manifest.tsv", newline="") as f:
        return {r["pr"]: r for r in csv.DictReader(f, delimiter="\t")}


def case_folder(corpus: Path, spec: str) -> tuple[str, Path]:
    pr, _, sub = spec.partition(":")
    hits = sorted(p.parent for p in (corpus / pr).rglob("train_gpt.py") if sub in str(p))
    if not hits:
        raise SystemExit(f"{spec}: no train_gpt.py under {corpus / pr} matching {sub!r}")
    return pr, hits[0]


def synthetic_split(root: Path, tokenizer: Path, val_targets: int, train_tokens: int, seed: int = 1337):
    """Official layout under ``root``: datasets/fineweb10B_sp{V}/fineweb_{val,train}_000000.bin and the tokenizer."""
    import numpy as np

    from reference_model import data, tokenizer as tk

    vocab = tk.load_tokenizer(tokenizer).vocab_size()
    rng = np.random.default_rng(seed)
    succ = rng.integers(2, vocab, size=(vocab, 16))
    weights = 1.0 / np.arange(1, 17)
    weights /= weights.sum()

    def stream(n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        i = 0
        while i < n:
            length = int(rng.integers(300, 3000))
            topic = rng.integers(2, vocab, size=32)
            choice = rng.choice(16, size=length, p=weights)
            from_topic = rng.random(length) < 0.3
            pick = rng.integers(0, 32, size=length)
            prev = 1
            for j in range(min(length, n - i)):
                if j == 0:
                    tok = 1  # BOS
                elif from_topic[j]:
                    tok = int(topic[pick[j]])
                else:
                    tok = int(succ[prev, choice[j]])
                out[i] = tok
                prev = tok
                i += 1
        return out

    val = stream(val_targets + 1)
    train = stream(train_tokens)
    dd = data.dataset_dir(root, vocab)
    dd.mkdir(parents=True, exist_ok=True)
    data.write_shard(dd / data.shard_name("val", 0), val)
    data.write_shard(dd / data.shard_name("train", 0), train)
    tok = data.tokenizer_file(root, vocab)
    tok.parent.mkdir(parents=True, exist_ok=True)
    tok.write_bytes(Path(tokenizer).read_bytes())
    return dd, tok


def evidence(d: dict) -> list[dict]:
    out = []
    for c in d["checks"] + d["probes"]:
        if c["verdict"] != "PASS":
            fv = c.get("first_violation")
            out.append({"id": c.get("id", c.get("name")), "condition": c["condition"], "verdict": c["verdict"],
                        "message": c["message"], "first_violation": fv})
    return out


def trace_summary(workdir: Path, n: int, bucket: int = 16384) -> dict:
    """What the raw trace saw: LOOK events, positions looked at per bucket of the split, tracer errors."""
    import numpy as np

    from harness.ledger import LOOK, Ledger

    ranks = sorted((workdir / "work-main" / ".scorefirst-trace").glob("rank*"))
    if not ranks:
        return {}
    raw = Ledger(ranks[0])
    seen = np.zeros(n + 1, dtype=bool)
    kr = raw.kind_ranges(LOOK)
    for a, b in zip(kr.start, kr.stop):
        seen[a:b] = True
    return {"looks": int((raw.events["kind"] == LOOK).sum()),
            "looked_per_bucket": [int(seen[i : i + bucket].sum()) for i in range(0, n, bucket)],
            "metas": [m for m in raw.metas if m.get("event") in ("tracer-error", "report", "device")][:30]}


def case_env(specs: list[str] | None, pr: str) -> dict[str, str]:
    """``PR:KEY=VALUE`` options that apply to this case (the settings a case's own README runs it with)."""
    out = {}
    for spec in specs or []:
        who, _, kv = spec.partition(":")
        if who == pr:
            k, _, v = kv.partition("=")
            out[k] = v
    return out


def save_trace(workdir: Path, dest: Path) -> None:
    """The raw trace and the derived ledger of one case, xz-compressed, for re-checking elsewhere."""
    import tarfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:xz", preset=1) as tf:
        for sub in ("work-main/.scorefirst-trace", "ledger"):
            if (workdir / sub).exists():
                tf.add(workdir / sub, arcname=sub)


def audit(args) -> int:
    from harness.dynamic import ScriptOptions, audit_script
    from harness.sandbox import Limits

    import torch

    gpu = torch.cuda.is_available()
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_m = manifest(corpus)
    base = Path(tempfile.mkdtemp(prefix="real-scripts-"))
    dd, tok = synthetic_split(base, Path(args.tokenizer), args.val_tokens, args.train_tokens)
    rows = []
    for spec in args.case:
        pr, folder = case_folder(corpus, spec)
        m = rows_m.get(pr, {})
        rule = (m.get("rule") or "").split("+")[0]
        probes = pr in (args.probe_case or [])
        expect = dict(EXPECT.get(rule, {}), **({"C1": "PASS"} if probes and m.get("label") == "legal" else {}))
        t0 = time.monotonic()
        row = {"pr": pr, "folder": str(folder.relative_to(corpus)), "label": m.get("label"), "rule": m.get("rule"),
               "expected": expect, "probes": probes}
        env = dict(RUN_ENV, **case_env(args.case_env, pr))
        row["run_env"] = env
        try:
            a = audit_script(ScriptOptions(path=folder, data_path=dd, tokenizer_path=tok, val_tokens=args.val_tokens,
                                           iterations=args.iterations, env=env, gpu=gpu, nproc=1,
                                           isolation=args.sandbox,
                                           probes=probes, probe_cuts=args.probe_cuts, keep=base / f"keep-{pr}",
                                           limits=Limits(cpu_seconds=args.timeout * 4, memory_mb=65536,
                                                         wall_seconds=args.timeout)))
            d = a.result.to_dict()
            got = d["verdict"]["conditions"]
            row.update({"observed": got, "overall": d["verdict"]["overall"], "reported": d["reported"],
                        "reconstructed": d["reconstructed"], "leak": d["leak"], "evidence": evidence(d),
                        "probe_results": d["probes"],  # PASS ones too: what was compared, at what tolerance
                        "exit_code": a.sandbox.exit_code, "script_seconds": round(a.sandbox.wall_seconds, 1),
                        "isolation": d["sandbox"]["isolation"] if d["sandbox"] else None,
                        "device": a.device.describe() if a.device else None,
                        "stderr_tail": a.sandbox.tail()[-1500:] if a.sandbox.exit_code else ""})
            row["match"] = all(got.get(c) == v for c, v in expect.items())
            row["script_lines"] = [ln for ln in a.sandbox.stdout.splitlines()
                                   if re.search(r"val_loss|val_bpb|ttt|eval", ln)][-40:]
            row["trace"] = trace_summary(a.workdir, args.val_tokens + 1)
            if args.save_traces:
                save_trace(a.workdir, Path(args.save_traces) / f"trace-{pr}.tar.xz")
        except Exception as exc:  # one case failing to run must not lose the others
            row.update({"error": repr(exc)[:1500], "match": False})
        row["seconds"] = round(time.monotonic() - t0, 1)
        rows.append(row)
        print(f"{pr:>6} {row.get('label')}/{row.get('rule')}: expected {expect} got {row.get('observed')} "
              f"{'OK' if row['match'] else 'MISMATCH'} ({row['seconds']} s)"
              + (f"; leak: {row['leak']['sentence']}" if row.get("leak") and row.get("overall") == "FAIL" else "")
              + (f"; {row['error']}" if "error" in row else ""), flush=True)
        for e in row.get("evidence", []):
            print(f"        {e['verdict']} {e['condition']} {e['id']}: {e['message'][:300]}", flush=True)
        if row.get("stderr_tail"):
            print("        stderr: " + row["stderr_tail"][-600:].replace("\n", "\n        "), flush=True)
        res = {"machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "val_targets": args.val_tokens, "train_tokens": args.train_tokens,
               "iterations": args.iterations, "run_env": RUN_ENV, "cases": rows,
               "date": time.strftime("%Y-%m-%d", time.gmtime())}
        (out / "real_scripts_audit.json").write_text(json.dumps(res, indent=1) + "\n")  # after every case
    print(f"{sum(r['match'] for r in rows)}/{len(rows)} cases as expected")
    return 0 if all(r["match"] for r in rows) else 1


def write_overhead(out: Path, runs: list[dict], meta: dict) -> dict:
    """Traced/plain ratios per mode (and per tracer, when there are several) from the runs so far, written to
    ``OUT/real_scripts_overhead.json`` (after every run, so a call cut short keeps what finished)."""
    import numpy as np
    import torch

    summary = {}
    tracers = list(dict.fromkeys(r["tracer"] for r in runs if r["traced"]))
    for compiled in (False, True):
        sel = [r for r in runs if r["compiled"] == compiled and r["exit_code"] == 0]
        plain = [r for r in sel if not r["traced"]]
        for tracer in tracers:
            traced = [r for r in sel if r["traced"] and r["tracer"] == tracer]
            if not (plain and traced):
                continue
            key = ("compiled" if compiled else "eager") + ("" if len(tracers) == 1 else f" {tracer}")
            pw, tw = np.median([r["wall_s"] for r in plain]), np.median([r["wall_s"] for r in traced])
            pe = np.median([sum(v for _, v in r["eval_time_ms"]) for r in plain])
            te = np.median([sum(v for _, v in r["eval_time_ms"]) for r in traced])
            summary[key] = {"wall_plain_s": float(pw), "wall_traced_s": float(tw), "wall_ratio": float(tw / pw),
                            "eval_plain_ms": float(pe), "eval_traced_ms": float(te),
                            "eval_ratio": float(te / pe) if pe else None}
    res = {**meta, "machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "run_env": RUN_ENV, "runs": runs, "summary": summary,
           "date": time.strftime("%Y-%m-%d", time.gmtime())}
    (out / "real_scripts_overhead.json").write_text(json.dumps(res, indent=1) + "\n")
    return summary


def label(root: Path) -> str:
    return "this tree" if root == REPO else root.name


def overhead(args) -> int:
    """Plain vs traced runs of one script (in the order of ``--modes``), alternating, same data and environment."""
    import numpy as np

    from harness.tracer import python_path

    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pr, folder = case_folder(corpus, args.case[0])
    base = Path(tempfile.mkdtemp(prefix="real-overhead-"))
    dd, tok = synthetic_split(base, Path(args.tokenizer), args.val_tokens, args.train_tokens)
    from reference_model import data

    val = np.concatenate([data.read_shard(p) for p in data.list_shards(dd, "val")])
    val_file = base / "val_tokens.npy"
    np.save(val_file, val.astype(np.uint16))
    env0 = {**os.environ, **RUN_ENV, "DATA_PATH": str(dd), "DATA_DIR": str(base), "TOKENIZER_PATH": str(tok),
            "VOCAB_SIZE": "1024", "ITERATIONS": str(args.iterations), "MAX_WALLCLOCK_SECONDS": "0",
            "WARMUP_STEPS": "0", "VAL_LOSS_EVERY": "0", "SEED": "1337", "PYTHONUNBUFFERED": "1"}
    runs = []
    meta = {"pr": pr, "folder": str(folder.relative_to(corpus)), "val_targets": args.val_tokens,
            "iterations": args.iterations}
    summary = {}
    roots = [Path(t).resolve() for t in (args.tracer or [REPO])]
    for compiled in [m == "compiled" for m in args.modes.split(",")]:
        for root in [None, *roots] * args.reps:
            traced = root is not None
            work = Path(tempfile.mkdtemp(prefix="run-", dir=base))
            for p in folder.iterdir():
                if p.is_file() and p.suffix in (".py", ".txt", ".md"):
                    (work / p.name).write_bytes(p.read_bytes())
            env = dict(env0, TORCHDYNAMO_DISABLE="0" if compiled else "1")
            standin = python_path().split(":", 1)[1] if ":" in python_path() else ""
            if traced:
                env.update({"PYTHONPATH": ":".join(filter(None, [str(root / "harness" / "tracer"), standin])),
                            "SCOREFIRST_TRACE": str(work / "trace"), "SCOREFIRST_VAL_TOKENS": str(val_file),
                            "SCOREFIRST_VOCAB": "1024", "SCOREFIRST_REPO": str(root)})
            else:
                env["PYTHONPATH"] = standin
            t0 = time.monotonic()
            try:
                p = subprocess.run([sys.executable, "train_gpt.py"], cwd=work, env=env, capture_output=True,
                                   text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired as e:
                p = subprocess.CompletedProcess(e.cmd, 124, (e.stdout or b"").decode(errors="replace")
                                                if isinstance(e.stdout, bytes) else (e.stdout or ""),
                                                f"timed out after {args.timeout} s")
            wall = time.monotonic() - t0
            evals = [(m.group(1), float(m.group(2))) for m in map(EVAL_TIME.match, p.stdout.splitlines()) if m]
            seen = {}
            if traced and (work / "trace" / "rank0").is_dir():  # a tracer that saw nothing would be cheap too
                from harness.ledger import LOOK, Ledger

                raw = Ledger(work / "trace" / "rank0")
                seen = {"looks": int((raw.events["kind"] == LOOK).sum()),
                        "tracer_errors": [m for m in raw.metas if m.get("event") == "tracer-error"][:5]}
            runs.append({"compiled": compiled, "traced": traced, "tracer": label(root) if traced else None, **seen,
                         "exit_code": p.returncode, "wall_s": round(wall, 2),
                         "eval_time_ms": evals, "stderr_tail": p.stderr[-800:] if p.returncode else ""})
            print(f"{'compiled' if compiled else 'eager':8} {label(root) if traced else 'plain':10} {seen} "
                  f"exit {p.returncode} wall {wall:.1f} s evals {evals}"
                  + (f"\n{p.stderr[-800:]}" if p.returncode else ""), flush=True)
            summary = write_overhead(out, runs, meta)
    print(json.dumps(summary, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["audit", "overhead"])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True, help="the sp1024 SentencePiece model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True, help="PR[:folder substring] (repeatable)")
    ap.add_argument("--probe-case", action="append", help="PR whose C1 probe is run (each cut is one more run)")
    ap.add_argument("--probe-cuts", type=int, default=2)
    ap.add_argument("--val-tokens", type=int, default=131_072)
    ap.add_argument("--train-tokens", type=int, default=2_000_000)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--modes", default="eager,compiled", help="overhead: which pairs, in this order")
    ap.add_argument("--tracer", action="append", help="overhead: a repository root whose tracer runs (repeatable)")
    ap.add_argument("--case-env", action="append", help="PR:KEY=VALUE run setting for one case (repeatable)")
    ap.add_argument("--save-traces", help="audit: write each case's raw trace and ledger here (tar.xz)")
    ap.add_argument("--timeout", type=int, default=420)
    ap.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare"],
                    help="audit: isolation (the GPU machines have no bubblewrap: name unshare there)")
    args = ap.parse_args()
    return audit(args) if args.what == "audit" else overhead(args)


if __name__ == "__main__":
    sys.exit(main())
