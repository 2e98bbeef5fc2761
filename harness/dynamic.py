"""Orchestration of the dynamic audit.

* :func:`audit_reference` — the reference model, exactly: an evaluation mode (legal TTT or an illegal control) runs
  through its observer into a ledger, the ledger is checked, the C1/C2 probes run on a bounded prefix.
* :func:`audit_script` — a third-party ``train_gpt.py``: a small dataset in the official layout, the script run in
  the sandbox under the tracer with environment overrides for a short run, the trace turned into a ledger and
  checked, the C1 probe as a second run with the validation tokens after k replaced (``scorefirst audit --dynamic``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.checks import SCRIPT_TOLERANCE, Tolerance, build_timeline, check_ledger
from harness.dynamic_result import CHECK_CONDITIONS, Check, DynamicResult, Probe
from harness.ledger import SCORE, Ledger, LedgerObserver, LedgerWriter

REPO = Path(__file__).resolve().parents[1]


def doc_starts(tokens: np.ndarray, bos_id: int = 1) -> list[int]:
    """Document starts as the reference's per-document TTT cuts them (BOS to the next BOS, position 0 always)."""
    starts = np.flatnonzero(tokens[:-1] == bos_id)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    return [int(s) for s in starts]


def finish(result: DynamicResult, ledger: Ledger, outcome) -> DynamicResult:
    result.ledger = ledger.summary()
    result.reconstructed = {"val_loss": outcome.reconstructed.get("val_loss"),
                            "val_bpb": outcome.reconstructed.get("val_bpb")}
    result.checks = list(outcome.checks) + list(result.checks)
    result.timeline = build_timeline(ledger, outcome.violations)
    return result


# --- the reference model -------------------------------------------------------------------------------------------


def audit_reference(mode: str, make_model, val: np.ndarray, bytes_at: np.ndarray, cfg, ledger_path: Path,
                    probes: bool = True, probe_tokens: int = 1100, dist_fn_model=None) -> DynamicResult:
    """Evaluate ``mode`` on ``val`` through a :class:`LedgerObserver`, check the ledger, probe C1 and C2.

    ``make_model()`` returns a fresh copy of the evaluated model (TTT modes adapt it). Probes run on the first
    ``probe_tokens`` tokens (bounded cost) with fresh copies.
    """
    import torch

    from reference_model.modes import MODES
    from harness.probes import future_perturbation, model_dist_fn, normalization, reference_eval_fn

    spec = MODES[mode]
    obs = LedgerObserver(LedgerWriter(ledger_path, positions=int(val.size),
                                      meta={"mode": mode, "legal": spec.legal, "rule": spec.rule}))
    try:
        res = spec.function()(make_model(), val, torch.from_numpy(bytes_at.astype(np.int64)), cfg, obs)
    except BaseException:
        obs.close(complete=False)
        raise
    obs.close()
    ledger = Ledger(ledger_path)
    reported = {k: res.get(k) for k in ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes")}
    outcome = check_ledger(ledger, bytes_at=bytes_at, reported=reported, doc_starts=doc_starts(val))
    result = DynamicResult(mode="reference", script=f"reference_model --ttt {mode} ({spec.label})",
                           reported={"val_loss": res.get("val_loss"), "val_bpb": res.get("val_bpb")})
    if probes:
        prefix = val[:probe_tokens].copy()
        pbytes = lambda t: torch.ones(t.size, dtype=torch.long)  # noqa: E731 - NLL only
        result.probes.append(future_perturbation(reference_eval_fn(mode, make_model, cfg, bytes_fn=pbytes), prefix,
                                                 cfg.model.vocab_size, what=f"reference {mode} evaluation"))
        model = dist_fn_model or make_model()
        result.probes.append(normalization(model_dist_fn(model), prefix, cfg.model.vocab_size,
                                           context=cfg.eval.seq_len, what="reference model head (softcapped logits)"))
    return finish(result, ledger, outcome)


# --- third-party scripts -------------------------------------------------------------------------------------------

# What a short audit run sets; the user's --env and the submission's README run command may not override these.
RUN_OVERRIDES = {"MAX_WALLCLOCK_SECONDS": "0", "WARMUP_STEPS": "0", "VAL_LOSS_EVERY": "0", "TORCHDYNAMO_DISABLE": "1",
                 "SEED": "1337", "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
DATA_KEYS = ("DATA_PATH", "TOKENIZER_PATH", "VOCAB_SIZE")
SUBMISSION_FILES = (".py", ".md", ".sh", ".txt", ".json")
SUBMISSION_FILE_LIMIT = 5_000_000


@dataclass
class ScriptOptions:
    """How to run one submission under the tracer (``scorefirst audit --dynamic``)."""

    path: Path                                  # train_gpt.py, or the submission folder holding it
    data_path: Path | None = None               # a folder of official shards (fineweb_{train,val}_*.bin)
    tokenizer_path: Path | None = None
    val_tokens: int = 65_536                    # validation targets of the audit split
    train_tokens: int = 4_000_000
    iterations: int = 20
    env: dict[str, str] = field(default_factory=dict)   # --env, over the README's run command
    nproc: int = 1
    gpu: bool = False
    isolation: str = "auto"
    limits: Any = None                          # harness.sandbox.Limits
    probes: bool = True
    probe_atol: float | None = None             # None: 0 (bit-identical) on CPU, 1e-3 with --gpu
    reported_label: str | None = None           # regex picking the reported line (default: the last one)
    keep: Path | None = None                    # keep the run folder (ledger, logs) here
    cache_dir: Path | None = None
    progress: bool = False


@dataclass
class Dataset:
    root: Path
    data_path: Path
    tokenizer: Path
    vocab: int
    val: np.ndarray
    bytes_at: np.ndarray
    val_file: Path


@dataclass
class ScriptAudit:
    result: DynamicResult
    sandbox: Any                                # harness.sandbox.SandboxResult of the main run
    ledger_path: Path
    env: dict[str, str]
    workdir: Path


def _log(opts: ScriptOptions, msg: str) -> None:
    if opts.progress:
        print(f"scorefirst dynamic: {msg}", file=sys.stderr, flush=True)


_SOURCES: dict[tuple, tuple[np.ndarray, np.ndarray, Path]] = {}


def source_data(opts: ScriptOptions) -> tuple[np.ndarray, np.ndarray, Path]:
    """(validation tokens, training tokens, tokenizer) from --data-path/--tokenizer-path or the embedded default
    (read once per process: finding the prepared default corpus re-reads the standard library's docstrings)."""
    key = (str(opts.data_path), str(opts.tokenizer_path), str(opts.cache_dir), opts.train_tokens)
    if key not in _SOURCES:
        _SOURCES[key] = _read_sources(opts)
    return _SOURCES[key]


def _read_sources(opts: ScriptOptions) -> tuple[np.ndarray, np.ndarray, Path]:
    from reference_model import data, prepare

    if opts.data_path is None:
        data_path, tok, _ = prepare.ensure_default_data(opts.cache_dir, 1024, opts.tokenizer_path, opts.progress)
    else:
        data_path = Path(opts.data_path)
        tok = opts.tokenizer_path
        if tok is None:
            cands = sorted(data_path.parent.parent.glob("tokenizers/*.model"))
            if len(cands) != 1:
                raise ValueError(f"cannot tell which tokenizer goes with {data_path}: pass --tokenizer-path")
            tok = cands[0]
    val = np.concatenate([data.read_shard(p) for p in data.list_shards(data_path, "val")])
    train_parts, have = [], 0
    for p in data.list_shards(data_path, "train"):
        part = data.read_shard(p)[: opts.train_tokens - have]
        train_parts.append(part)
        have += part.size
        if have >= opts.train_tokens:
            break
    return val, np.concatenate(train_parts), Path(tok)


def build_dataset(root: Path, val: np.ndarray, train: np.ndarray, tokenizer: Path) -> Dataset:
    """The official layout: datasets/fineweb10B_sp{V}/fineweb_{train,val}_000000.bin (256 x int32 header, magic
    20240520, version 1, uint16 tokens) and tokenizers/fineweb_{V}_bpe.model."""
    from reference_model import data, metric, tokenizer as tk

    sp = tk.load_tokenizer(tokenizer)
    vocab = sp.vocab_size()
    data_path = data.dataset_dir(root, vocab)
    tok = data.tokenizer_file(root, vocab)
    tok.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer, tok)
    data.write_shard(data_path / data.shard_name("val", 0), val)
    data.write_shard(data_path / data.shard_name("train", 0), train)
    val_file = root / "val_tokens.npy"
    np.save(val_file, val.astype(np.uint16))
    bytes_at = metric.target_bytes(val, metric.build_luts(sp, vocab))
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return Dataset(root, data_path, tok, vocab, val, bytes_at, val_file)


def stated_env(opts: ScriptOptions) -> dict[str, str]:
    """The run environment: README/shell run commands of the submission folder, then --env, then the short-run
    overrides. A key stated with several values in the README takes the last one."""
    from audits.runenv import run_commands_env

    folder = opts.path if opts.path.is_dir() else opts.path.parent
    env: dict[str, str] = {}
    for s in run_commands_env(folder):
        env[s.key] = s.value
    env.update(opts.env)
    for k in DATA_KEYS:
        env.pop(k, None)
    env.update(RUN_OVERRIDES)
    env["ITERATIONS"] = str(opts.iterations)
    return env


def _entry(path: Path) -> tuple[Path, str]:
    """(folder to copy, script name) of a submission given as a file or a folder."""
    if path.is_dir():
        if (path / "train_gpt.py").is_file():
            return path, "train_gpt.py"
        pys = sorted(p.name for p in path.glob("*.py"))
        if len(pys) != 1:
            raise ValueError(f"{path}: no train_gpt.py, and not exactly one .py file to run")
        return path, pys[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.parent, path.name


def _copy_submission(path: Path, work: Path) -> str:
    folder, name = _entry(path)
    for p in folder.iterdir():
        if p.is_file() and not p.is_symlink() and p.suffix in SUBMISSION_FILES and \
                p.stat().st_size <= SUBMISSION_FILE_LIMIT:
            shutil.copyfile(p, work / p.name)
    return name


def run_traced(opts: ScriptOptions, ds: Dataset, base: Path, tag: str, env: dict[str, str]):
    """One sandboxed, traced run of the submission; returns (SandboxResult, raw trace ledger path or None)."""
    from harness import sandbox
    from harness.ledger import merge

    work = base / f"work-{tag}"
    work.mkdir()
    name = _copy_submission(opts.path, work)
    trace = work / ".scorefirst-trace"
    child = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM", "CUDA_VISIBLE_DEVICES",
                                                          "LD_LIBRARY_PATH")}
    child.update(env)
    child.update({"DATA_PATH": str(ds.data_path), "TOKENIZER_PATH": str(ds.tokenizer), "VOCAB_SIZE": str(ds.vocab),
                  "SCOREFIRST_TRACE": str(trace), "SCOREFIRST_VAL_TOKENS": str(ds.val_file),
                  "SCOREFIRST_VOCAB": str(ds.vocab), "SCOREFIRST_REPO": str(REPO), "PYTHONUNBUFFERED": "1"})
    if not opts.gpu:
        child.setdefault("OMP_NUM_THREADS", "1")
        child["CUDA_VISIBLE_DEVICES"] = ""
    if opts.nproc > 1:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={opts.nproc}", name]
        child["SCOREFIRST_TRACE_RANKS_ONLY"] = "1"
    else:
        argv = [sys.executable, name]
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
    res = sandbox.run(argv, work, child, ro_paths=[ds.root, REPO], limits=opts.limits or sandbox.Limits(),
                      isolation=opts.isolation, gpu=opts.gpu)
    ranks = sorted(trace.glob("rank*")) if trace.is_dir() else []
    if not ranks:
        return res, None
    if len(ranks) == 1:
        return res, ranks[0]
    merged = base / f"trace-{tag}-merged"
    merge(ranks, merged)
    return res, merged


# --- from a trace to a ledger ----------------------------------------------------------------------------------------


@dataclass
class Derived:
    path: Path
    reported: dict
    window: tuple[int, int] | None            # derived seqs [lo, hi) of the reported evaluation
    hypothesis: str
    notes: list[str]


def _reports(raw: Ledger) -> list[dict]:
    return [m for m in raw.metas if m.get("event") == "report"]


def _pick_report(reports: list[dict], label: str | None) -> dict | None:
    if label:
        pat = re.compile(label)
        reports = [r for r in reports if pat.search(r.get("line", ""))]
    return reports[-1] if reports else None


def _expand(rng: np.ndarray) -> np.ndarray:
    if not len(rng):
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b) for a, b in rng])


def evaluation_window(raw: Ledger, final: dict | None) -> tuple[int, int]:
    """Raw seqs (lo, hi] of the evaluation whose result was reported: back from the reported line to the latest
    earlier reported line such that the predictions made in between cover every validation target (progress lines
    inside one evaluation are skipped that way); the whole run when there is no such line."""
    from harness.ledger import LOOK, META

    n = raw.positions
    ev = raw.events
    if final is None:
        return -1, int(ev["seq"][-1]) + 1 if len(ev) else 0
    hi = int(final["seq"])
    report_seqs = {int(m["seq"]) for m in _reports(raw)}
    covered = np.zeros(n, dtype=bool)
    covered[0] = True
    end = int(np.searchsorted(ev["seq"], hi))
    for i in range(end - 1, -1, -1):
        kind, seq = int(ev["kind"][i]), int(ev["seq"][i])
        if kind == META and seq in report_seqs and covered.all():
            return seq, hi
        if kind == LOOK:
            for a, b in raw.event_ranges(i):
                covered[a:b] = True
    return -1, hi


def _new_in_event(pos: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Positions of one computation not predicted before; in a batch of overlapping windows the earliest row wins."""
    first = np.zeros(pos.size, dtype=bool)
    first[np.unique(pos, return_index=True)[1]] = True
    return first & ~seen[pos]


def _window_looks(raw: Ledger, lo: int, hi: int, grad_ok: bool):
    """The LOOK events inside (lo, hi) that count as scoring under a hypothesis, in order, each with its expanded
    positions, NLL values and which of them are first predictions."""
    from harness.ledger import FLAG_GRAD, LOOK

    seen = np.zeros(raw.positions, dtype=bool)
    ev = raw.events
    for i in np.flatnonzero((ev["kind"] == LOOK) & (ev["seq"] > lo) & (ev["seq"] < hi)):
        if not grad_ok and ev["flags"][i] & FLAG_GRAD:
            continue
        pos = _expand(raw.event_ranges(i))
        vals = np.asarray(raw.nll[ev["nll_off"][i] : ev["nll_off"][i] + ev["npos"][i]])
        new = _new_in_event(pos, seen)
        seen[pos] = True
        yield int(i), pos, vals, new


def _first_look_loss(raw: Ledger, lo: int, hi: int, grad_ok: bool) -> tuple[float, int]:
    total, count = 0.0, 0
    for _, _, vals, new in _window_looks(raw, lo, hi, grad_ok):
        total += float(vals[new].astype(np.float64).sum())
        count += int(new.sum())
    return total, count


def derive(raw: Ledger, out: Path, label: str | None = None, tol: Tolerance | None = None) -> Derived:
    """The ledger of the reported evaluation: SCORE = the first prediction of each position inside it, counting
    every computation (hypothesis "all"), or only those made without gradients ("no-grad": score under no_grad,
    train with grad) when that, and not the first, reproduces the reported score. Other computations stay LOOKs."""
    from harness.ledger import LOOK, META, UPDATE, Ranges

    tol = tol or SCRIPT_TOLERANCE
    notes: list[str] = []
    final = _pick_report(_reports(raw), label)
    if final is None:
        notes.append("no line with val_loss and val_bpb was printed: nothing reported to compare")
    lo, hi = evaluation_window(raw, final)
    hypothesis = "all"
    if final is not None:
        t = Tolerance(tol.loss_abs, tol.bytes_rel, final.get("decimals"))
        fits = {}
        for h, grad_ok in (("all", True), ("no-grad", False)):
            s, c = _first_look_loss(raw, lo, hi, grad_ok)
            fits[h] = c > 0 and abs(s / c - float(final["val_loss"])) <= t.loss()
        if not fits["all"] and fits["no-grad"]:
            hypothesis = "no-grad"
            notes.append("the reported score is reproduced by the predictions made without gradients; the "
                         "gradient-enabled computations before them are training, not scoring")
    n = raw.positions
    w = LedgerWriter(out, positions=n, meta={"source": "trace", "trace": str(raw.path), "hypothesis": hypothesis})
    w.meta(event="begin", mode="traced script", n_tokens=n, first_position=1, last_position=n - 1,
           state_scope="global", window=[lo, hi], hypothesis=hypothesis)
    ev = raw.events
    metas = {int(m["seq"]): m for m in raw.metas if "seq" in m}
    scoring = {i: (pos, vals, new) for i, pos, vals, new in _window_looks(raw, lo, hi, hypothesis == "all")}
    d_lo = d_hi = None
    for i in range(len(ev)):
        kind, seq = int(ev["kind"][i]), int(ev["seq"][i])
        inside = lo < seq < hi
        if inside and d_lo is None:
            d_lo = w.seq
        w.rank = int(ev["rank"][i])
        if kind == LOOK:
            version, flags = int(ev["version"][i]), int(ev["flags"][i])
            if i in scoring:
                pos, vals, new = scoring[i]
                if new.any():
                    w.score(pos[new], vals[new], version)
                if (~new).any():
                    w.look(pos[~new], vals[~new], version, flags)
            else:
                vals = np.asarray(raw.nll[ev["nll_off"][i] : ev["nll_off"][i] + ev["npos"][i]])
                w.look(Ranges(raw.event_ranges(i)), vals, version, flags)
        elif kind == UPDATE:
            w.update(Ranges(raw.event_ranges(i)), raw.event_touched(i), int(ev["version"][i]))
        elif kind == META:
            m = metas.get(seq, {})
            w.meta(**{k: v for k, v in m.items() if k != "seq"}, raw_seq=seq)
        if inside:
            d_hi = w.seq
    reported = {}
    if final is not None:
        reported = {"val_loss": final["val_loss"], "val_bpb": final["val_bpb"], "decimals": final.get("decimals"),
                    "line": final.get("line")}
    w.meta(event="end", **reported)
    w.close(complete=raw.complete)
    window = (d_lo, d_hi) if d_lo is not None else None
    return Derived(out, reported, window, hypothesis, notes)


def ledger_nll(path: Path) -> np.ndarray:
    """First-score NLL per position of a derived ledger (NaN where never scored)."""
    from harness.ledger import iter_tiles

    led = Ledger(path)
    return np.concatenate([t.first_nll for t in iter_tiles(led)]).astype(np.float64)


def audit_script(opts: ScriptOptions) -> ScriptAudit:
    """Run the submission traced in the sandbox on a small official-layout dataset, check the ledger, probe C1."""
    from harness.probes import choose_k, future_perturbation

    opts.path = Path(opts.path)
    _entry(opts.path)  # fail early on a bad path
    base = Path(tempfile.mkdtemp(prefix="scorefirst-dynamic-"))
    try:
        val_all, train, tok = source_data(opts)
        n_val = min(opts.val_tokens + 1, val_all.size)
        val = val_all[:n_val]
        ds = build_dataset(base / "data", val, train, tok)
        env = stated_env(opts)
        _log(opts, f"running {opts.path} on {val.size - 1:,} validation targets (vocab {ds.vocab})")
        res, raw_path = run_traced(opts, ds, base, "main", env)
        ledger_path = base / "ledger"
        result = DynamicResult(mode="script", script=str(opts.path), sandbox=res.info())
        if raw_path is None:
            result.checks.append(Check("run-completed", "DATA", "FAIL",
                                       f"the script produced no trace (exit code {res.exit_code}"
                                       f"{', ' + res.killed if res.killed else ''}): {_last_lines(res.stderr)}"))
            LedgerWriter(ledger_path, positions=int(val.size)).close(complete=False)
            led = Ledger(ledger_path)
            result.ledger = led.summary()
            return _keep(ScriptAudit(result, res, ledger_path, env, base), opts, base)
        derived = derive(Ledger(raw_path), ledger_path, opts.reported_label)
        led = Ledger(ledger_path)
        tol = Tolerance(SCRIPT_TOLERANCE.loss_abs, SCRIPT_TOLERANCE.bytes_rel, derived.reported.get("decimals"))
        outcome = check_ledger(led, bytes_at=ds.bytes_at, reported=derived.reported, tol=tol, traced=True,
                               look_window=derived.window)
        result.reported = {"val_loss": derived.reported.get("val_loss"), "val_bpb": derived.reported.get("val_bpb")}
        if res.exit_code != 0 or res.killed:
            nothing = not np.any(led.events["kind"] == SCORE)
            result.checks.append(Check("run-completed", "DATA", "FAIL" if nothing else "WARN",
                                       f"the script exited with code {res.exit_code}"
                                       f"{' (' + res.killed + ')' if res.killed else ''}"
                                       f"{', before scoring anything' if nothing else '; the checks cover what ran'}: "
                                       f"{_last_lines(res.stderr)}"))
        else:
            result.checks.append(Check("run-completed", "DATA", "PASS",
                                       f"ran to completion in {res.wall_seconds:.1f} s; scores taken as "
                                       f"{'every' if derived.hypothesis == 'all' else 'gradient-free'} first "
                                       f"prediction inside the reported evaluation"
                                       + ("; " + "; ".join(derived.notes) if derived.notes else "")))
        finish(result, led, outcome)
        if opts.probes and res.exit_code == 0:
            k = choose_k(val)
            atol = opts.probe_atol if opts.probe_atol is not None else (1e-3 if opts.gpu else 0.0)
            runs = {}

            def eval_fn(tokens: np.ndarray) -> np.ndarray:
                if tokens is val:
                    return ledger_nll(ledger_path)
                tag = f"probe{len(runs)}"
                pds = build_dataset(base / f"data-{tag}", tokens, train, tok)
                _log(opts, f"C1 probe: running again with the validation tokens after {k:,} replaced")
                pres, praw = run_traced(opts, pds, base, tag, env)
                runs[tag] = pres
                if praw is None or pres.exit_code != 0:
                    return np.full(tokens.size, np.nan)
                d = derive(Ledger(praw), base / f"ledger-{tag}", opts.reported_label)
                return ledger_nll(d.path)

            probe = future_perturbation(eval_fn, val, ds.vocab, k=k, atol=atol, what=f"{opts.path.name} run twice")
            probe = _probe_note(probe, runs)
            result.probes.append(probe)
        return _keep(ScriptAudit(result, res, ledger_path, env, base), opts, base)
    except BaseException:
        if opts.keep is None:
            shutil.rmtree(base, ignore_errors=True)
        raise


def _probe_note(probe: Probe, runs: dict) -> Probe:
    failed = [r for r in runs.values() if r.exit_code != 0]
    if failed:
        r = failed[0]
        probe.verdict = "WARN"
        probe.message = (f"the perturbed run failed (exit code {r.exit_code}"
                         f"{', ' + r.killed if r.killed else ''}): {_last_lines(r.stderr)}")
    return probe


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:600] or "(no output)"


def _keep(audit: ScriptAudit, opts: ScriptOptions, base: Path) -> ScriptAudit:
    """Move the run folder to --ledger-dir (or delete it); the ledger path in the result follows."""
    if opts.keep is not None:
        dest = Path(opts.keep)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(base), dest)
        audit.ledger_path = dest / audit.ledger_path.relative_to(base)
        audit.workdir = dest
        audit.result.ledger["path"] = str(audit.ledger_path)
    else:
        audit.result.ledger["path"] = None
        shutil.rmtree(base, ignore_errors=True)
    return audit


# --- the audit command ------------------------------------------------------------------------------------------------


def attach(static, audit: ScriptAudit) -> None:
    """Put the dynamic section (with the static/dynamic agreement) on an AuditResult; each network attempt the
    sandbox blocked becomes a PG-NET finding on the audited script."""
    from audits.results import Finding, FileResult, fingerprint
    from audits.types import Condition, Confidence, Severity
    from harness.crosscheck import agreement

    dyn = audit.result
    dyn.agreement = agreement(static, dyn)
    static.dynamic = dyn.to_dict()
    if not audit.sandbox or not audit.sandbox.network_attempts:
        return
    folder, name = _entry(Path(dyn.script))
    script = str(folder / name)
    fr = next((f for f in static.files if f.path.endswith(name)), None)
    if fr is None:
        fr = FileResult(path=script)
        static.files.append(fr)
    for i, what in enumerate(audit.sandbox.network_attempts):
        msg = f"network attempt during the dynamic run, blocked by the sandbox: {what}"
        fr.findings.append(Finding(
            rule_id="PG-NET", rule_name="network-access", conditions=[Condition.NET], severity=Severity.ERROR,
            confidence=Confidence.HIGH, message=msg, path=fr.path, line=1, column=1, end_line=1, end_column=1,
            snippet="(dynamic run)", fingerprint=fingerprint("PG-NET", fr.path, "dynamic:" + what, i)))


def options_from_args(args, path: Path, env: dict[str, str], target_name: str) -> ScriptOptions:
    from harness.sandbox import Limits

    keep = None
    if args.ledger_dir:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", target_name).strip("_") or "target"
        keep = Path(args.ledger_dir) / safe
    wall = args.timeout
    limits = Limits(cpu_seconds=wall * max(1, args.nproc) * 2, memory_mb=args.memory_mb, wall_seconds=wall)
    return ScriptOptions(path=path, data_path=Path(args.data_path) if args.data_path else None,
                         tokenizer_path=Path(args.tokenizer_path) if args.tokenizer_path else None,
                         val_tokens=args.val_tokens, iterations=args.iterations, env=env, nproc=args.nproc,
                         gpu=args.gpu, isolation=args.sandbox, limits=limits, probes=not args.no_probes,
                         reported_label=args.reported_label, keep=keep, progress=True)


def run_for_results(args, targets, results, env_settings) -> None:
    """``scorefirst audit --dynamic``: run every target's script and attach the dynamic section to its result."""
    env = {s.key: s.value for s in env_settings}
    for target, result in zip(targets, results):
        if len(target.paths) != 1:
            raise ValueError(f"--dynamic needs one file or folder per target, got {len(target.paths)} for "
                             f"{target.name}")
        audit = audit_script(options_from_args(args, Path(target.paths[0]), env, target.name))
        audit.result.script = target.name
        attach(result, audit)


def format_terminal(results) -> str:
    """The dynamic sections of the results, for the terminal (after the static output)."""
    from harness.crosscheck import explain

    out = []
    for r in results:
        d = r.dynamic
        if not d:
            continue
        dyn = DynamicResult.from_dict(d)
        sb = dyn.sandbox
        out.append(f"\ndynamic audit: {dyn.script} ({dyn.mode})")
        if sb is not None:
            out.append(f"  sandbox: {sb.isolation.split(';')[0]}; network {sb.network}; exit {sb.exit_code} in "
                       f"{sb.wall_seconds:.1f} s" + (f"; stopped: {sb.killed}" if sb.killed else ""))
            for a in sb.network_attempts:
                out.append(f"  PG-NET blocked: {a}")
        led = d["ledger"]
        out.append(f"  ledger: {led['positions']:,} positions, {led['score_events']:,} score and "
                   f"{led['update_events']:,} update events{'' if led['complete'] else ' (INCOMPLETE)'}"
                   + (f" -> {led['path']}" if led.get("path") else ""))
        rep, rec = d["reported"], d["reconstructed"]
        out.append("  reported val_loss {} val_bpb {} · reconstructed val_loss {} val_bpb {}".format(
            *(f"{v:.6f}" if isinstance(v, float) else "-" for v in
              (rep["val_loss"], rep["val_bpb"], rec["val_loss"], rec["val_bpb"]))))
        for c in dyn.checks:
            out.append(f"  {c.verdict:<4} {c.condition:<5} {c.id}: {c.message}")
            if c.first_violation is not None and c.verdict != "PASS":
                out.append(f"       first violation: {c.first_violation.detail}")
        for p in dyn.probes:
            out.append(f"  {p.verdict:<4} {p.condition:<5} probe {p.name}: {p.message}")
            out.append(f"       probed: {p.probed}")
        rows = [a for a in dyn.agreement if a.static is not None and a.dynamic is not None]
        if rows:
            out.append("  static vs dynamic: " + " · ".join(
                f"{a.condition} {a.static}/{a.dynamic}{'' if a.agree else ' DISAGREE'}" for a in rows))
            for a in rows:
                if not a.agree:
                    out.append(f"  DISAGREE {a.condition}: static {a.static}, dynamic {a.dynamic} -- a person should "
                               f"look ({explain(r, dyn, a)})")
        v = d["verdict"]
        out.append("  dynamic verdict: " + " ".join(f"{c} {v['conditions'][c] or '-'}" for c in v["conditions"])
                   + f" -> {v['overall']}")
    return "\n".join(out) + ("\n" if out else "")


def decide(results, code: int, reason: str, fail_on: str, exit_zero: bool) -> tuple[int, str]:
    """Fold the dynamic verdicts into the exit code: a dynamic FAIL (or WARN with --fail-on warning/info) gates
    like an error finding; exit 2 (could not audit) is never masked."""
    if code == 2:
        return code, reason
    gate = {"error": ("FAIL",), "warning": ("FAIL", "WARN"), "info": ("FAIL", "WARN")}[fail_on]
    bad = []
    for r in results:
        if r.dynamic:
            dyn = DynamicResult.from_dict(r.dynamic)
            bad += [f"{c} {v}" for c in CHECK_CONDITIONS if (v := dyn.verdict_of(c)) in gate]
    if not bad:
        return code, reason
    why = f"dynamic audit: {', '.join(sorted(set(bad)))}"
    if exit_zero:
        return 0, f"{reason}; {why}; --exit-zero"
    return 1, why if code == 0 else f"{reason}; {why}"
