"""Orchestration of the dynamic audit.

* :func:`audit_reference` — the reference model, exactly: an evaluation mode (legal TTT or an illegal control) runs
  through its observer into a ledger, the ledger is checked, the C1/C2 probes run on a bounded prefix.
* :func:`audit_script` — a third-party ``train_gpt.py``: a small dataset in the official layout, the script run in
  the sandbox under the tracer (torchrun when its README says so, :mod:`harness.launch`) with environment overrides
  for a short run, the trace turned into the ledger of the reported evaluation (:mod:`harness.derive`) and checked,
  the C1 probe as a second run with the validation tokens after k replaced (``scorefirst audit --dynamic``).
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

from audits.dynamic_result import CHECK_CONDITIONS, Check, DynamicResult, Probe
from audits.types import Verdict
from core.competition import BOS_ID
from harness.checks import SCRIPT_TOLERANCE, Tolerance, build_timeline, check_ledger
from harness.derive import derive, ledger_nll
from harness.launch import Launch, resolve as resolve_launch
from harness.ledger import SCORE, Ledger, LedgerObserver, LedgerWriter, iter_tiles

REPO = Path(__file__).resolve().parents[1]


def doc_starts(tokens: np.ndarray, bos_id: int = BOS_ID) -> list[int]:
    """Document starts as the reference's per-document TTT cuts them (BOS to the next BOS, position 0 always)."""
    starts = np.flatnonzero(tokens[:-1] == bos_id)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    return [int(s) for s in starts]


def finish(result: DynamicResult, ledger: Ledger, outcome) -> DynamicResult:
    result.ledger = ledger.summary()
    result.reconstructed = {"val_loss": outcome.reconstructed.get("val_loss"),
                            "val_bpb": outcome.reconstructed.get("val_bpb"),
                            "leak": outcome.reconstructed.get("leak")}
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
        scored = np.concatenate([t.count > 0 for t in iter_tiles(ledger, 1 << 20, 0, prefix.size)])
        result.probes.append(normalization(model_dist_fn(model), prefix, cfg.model.vocab_size,
                                           context=cfg.eval.seq_len, what="reference model head (softcapped logits)",
                                           scored=scored))
    return finish(result, ledger, outcome)


# --- third-party scripts -------------------------------------------------------------------------------------------

# What a short audit run sets; the user's --env and the submission's README run command may not override these.
RUN_OVERRIDES = {"MAX_WALLCLOCK_SECONDS": "0", "WARMUP_STEPS": "0", "VAL_LOSS_EVERY": "0", "TORCHDYNAMO_DISABLE": "1",
                 "SEED": "1337", "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
DATA_KEYS = ("DATA_PATH", "DATA_DIR", "TOKENIZER_PATH", "VOCAB_SIZE")
SUBMISSION_FILES = (".py", ".md", ".sh", ".txt", ".json")
SUBMISSION_FILE_LIMIT = 5_000_000
TRACE_DIR = ".scorefirst-trace"                # in the work directory; read back as hostile input
RANK_DIR = re.compile(r"^rank[0-9]{1,4}$")


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
    nproc: int | None = None                    # torchrun processes; None: as the README's run command says
    gpu: bool = False
    isolation: str = "auto"
    limits: Any = None                          # harness.sandbox.Limits
    probes: bool = True
    probe_atol: float | None = None             # None: 0 (bit-identical) on CPU, 1e-3 when the script ran on CUDA
    probe_cuts: int = 3                         # C1 cuts inside the scored range (each one more run)
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
    launch: Launch | None = None
    device: Device | None = None                # where the script made its predictions
    probe_atol: float | None = None             # the C1 probe's tolerance, when it ran


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


def launch_of(opts: ScriptOptions) -> Launch:
    """python or torchrun, and how many processes (see :mod:`harness.launch`)."""
    gpus = 0
    if opts.gpu:
        import torch

        gpus = torch.cuda.device_count()
    folder, _ = _entry(opts.path)
    return resolve_launch(folder, opts.nproc, opts.gpu, gpus)


def run_traced(opts: ScriptOptions, ds: Dataset, base: Path, tag: str, env: dict[str, str], launch: Launch):
    """One sandboxed, traced run of the submission; returns (SandboxResult, raw trace ledger path or None, what the
    trace is). Under torchrun every rank writes its own ledger; they are merged (:func:`harness.ledger.merge`)."""
    from harness import sandbox
    from harness.ledger import merge

    work = base / f"work-{tag}"
    work.mkdir()
    name = _copy_submission(opts.path, work)
    trace = work / TRACE_DIR
    child = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM", "CUDA_VISIBLE_DEVICES",
                                                          "LD_LIBRARY_PATH")}
    child.update(env)
    child.update({"DATA_PATH": str(ds.data_path), "DATA_DIR": str(ds.root), "TOKENIZER_PATH": str(ds.tokenizer),
                  "VOCAB_SIZE": str(ds.vocab),
                  "SCOREFIRST_TRACE": str(trace), "SCOREFIRST_VAL_TOKENS": str(ds.val_file),
                  "SCOREFIRST_VOCAB": str(ds.vocab), "SCOREFIRST_BOS": str(BOS_ID), "SCOREFIRST_REPO": str(REPO),
                  "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})  # the repository is read-only in there
    if not opts.gpu:
        child.setdefault("OMP_NUM_THREADS", "1")
        child["CUDA_VISIBLE_DEVICES"] = ""
    if launch.torchrun:
        child["SCOREFIRST_TRACE_RANKS_ONLY"] = "1"
    argv = launch.argv(name)
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
    collected = base / f"collected-{tag}"
    res = sandbox.run(argv, work, child, ro_paths=[ds.root, REPO / "harness"], limits=opts.limits or sandbox.Limits(),
                      isolation=opts.isolation, gpu=opts.gpu, collect=[TRACE_DIR], collect_to=collected)
    trace = res.collected.get(TRACE_DIR)
    ranks = [p for p in trace.iterdir() if RANK_DIR.match(p.name)] if trace is not None and trace.is_dir() else []
    ranks.sort(key=lambda p: int(p.name[4:]))
    if not ranks:
        return res, None, "no trace"
    if len(ranks) == 1:
        return res, ranks[0], "one process" if not launch.torchrun else "one rank"
    try:
        if not any(m.get("event") == "process-group" for r in ranks for m in Ledger(r).metas):
            return res, ranks[0], (f"{len(ranks)} ranks that never joined a process group, each running the whole "
                                   f"script alone: rank 0's run is audited")
        merged = base / f"trace-{tag}-merged"
        info = merge(ranks, merged)
    except Exception as e:  # written inside the sandbox: hostile input
        raise TraceUnreadable(res, f"the ranks' traces could not be merged ({type(e).__name__}: {str(e)[:300]})")
    return res, merged, f"{len(ranks)} ranks' ledgers merged ({info['mode']} updates)"


@dataclass(frozen=True)
class Device:
    """Where the traced script computed its predictions (the tracer's "device" record of the first look)."""

    type: str | None          # "cpu", "cuda", ...; None when nothing was predicted
    name: str | None = None

    def describe(self) -> str:
        if self.type is None:
            return "an unknown device (nothing was predicted)"
        return f"{self.type}" + (f" ({self.name})" if self.name else "")

    def probe_atol(self, gpu: bool) -> float:
        """The C1 probe's tolerance: bit-identical on the CPU (deterministic fp32); 1e-3 where the script ran on
        CUDA (kernels are not bit-reproducible run to run), or could have and predicted nothing."""
        return 1e-3 if self.type == "cuda" or (self.type is None and gpu) else 0.0


def ran_on(raw: Ledger) -> Device:
    m = next((m for m in raw.metas if m.get("event") == "device"), None)
    return Device(m.get("device"), m.get("name")) if m else Device(None)


def audit_script(opts: ScriptOptions) -> ScriptAudit:
    """Run the submission traced in the sandbox on a small official-layout dataset, check the ledger, probe C1."""
    from harness.probes import future_perturbation

    opts.path = Path(opts.path)
    launch = launch_of(opts)  # fails early on a bad path
    base = Path(tempfile.mkdtemp(prefix=f"scorefirst-dynamic-{os.getpid()}-"))  # the pid: see sandbox.reap_stale
    try:
        val_all, train, tok = source_data(opts)
        n_val = min(opts.val_tokens + 1, val_all.size)
        val = val_all[:n_val]
        ds = build_dataset(base / "data", val, train, tok)
        env = stated_env(opts)
        _log(opts, f"running {opts.path} on {val.size - 1:,} validation targets (vocab {ds.vocab}), "
                   f"{launch.describe()}")
        try:
            res, raw_path, traced_as = run_traced(opts, ds, base, "main", env, launch)
            unreadable = None
        except TraceUnreadable as e:
            res, raw_path, traced_as, unreadable = e.res, None, "", str(e)
        ledger_path = base / "ledger"
        result = DynamicResult(mode="script", script=str(opts.path), sandbox=res.info())
        result.checks += guard_checks(res) + containment_checks(res)
        tamper = [] if unreadable else tamper_evidence(res)
        raw = derived = led = None
        if raw_path is not None:
            try:
                raw = Ledger(raw_path)
                device = ran_on(raw)
                derived = derive(raw, ledger_path, opts.reported_label, bytes_at=ds.bytes_at)
                led = Ledger(ledger_path)
                tol = Tolerance(SCRIPT_TOLERANCE.loss_abs, SCRIPT_TOLERANCE.bytes_rel, derived.reported.get("decimals"))
                outcome = check_ledger(led, bytes_at=ds.bytes_at, reported=derived.reported, tol=tol, traced=True,
                                       look_window=derived.window, repeats=derived.repeats)
            except Exception as e:  # the trace was written inside the sandbox: hostile input, never trusted
                unreadable = f"the trace could not be read ({type(e).__name__}: {str(e)[:300]})"
        if raw_path is None or unreadable:
            why = unreadable or "the script produced no trace"
            result.checks.append(Check("run-completed", "DATA", "FAIL",
                                       f"{why} ({launch.describe()}; exit code {res.exit_code}"
                                       f"{', ' + res.killed if res.killed else ''}): {_last_lines(res.stderr)}"))
            result.checks += tamper
            if ledger_path.exists():
                shutil.rmtree(ledger_path)
            LedgerWriter(ledger_path, positions=int(val.size)).close(complete=False)
            led = Ledger(ledger_path)
            result.ledger = led.summary()
            return _keep(ScriptAudit(result, res, ledger_path, env, base, launch), opts, base)
        result.reported = {"val_loss": derived.reported.get("val_loss"), "val_bpb": derived.reported.get("val_bpb")}
        result.checks += tamper
        if res.exit_code != 0 or res.killed:
            nothing = not np.any(led.events["kind"] == SCORE)
            why = (", before scoring anything" if nothing else "; a run that did not complete cannot back the score "
                   "it reported (the checks cover what ran)")
            result.checks.append(Check("run-completed", "DATA", "FAIL",
                                       f"the script ({launch.describe()}) exited with code {res.exit_code}"
                                       f"{' (' + res.killed + ')' if res.killed else ''}{why}: "
                                       f"{_last_lines(res.stderr)}"))
        else:
            result.checks.append(Check("run-completed", "DATA", "PASS",
                                       f"ran to completion in {res.wall_seconds:.1f} s, {launch.describe()}, on "
                                       f"{device.describe()}; traced: {traced_as}; scores taken as "
                                       f"{'every' if derived.hypothesis == 'all' else 'gradient-free'} first "
                                       f"prediction inside the reported evaluation"
                                       + ("; " + "; ".join(derived.notes) if derived.notes else "")))
        finish(result, led, outcome)
        audit = ScriptAudit(result, res, ledger_path, env, base, launch, device)
        if opts.probes and res.exit_code == 0:
            atol = opts.probe_atol if opts.probe_atol is not None else device.probe_atol(opts.gpu)
            runs = {}

            def eval_fn(tokens: np.ndarray) -> np.ndarray:
                if tokens is val:
                    return ledger_nll(ledger_path)
                tag = f"probe{len(runs)}"
                pds = build_dataset(base / f"data-{tag}", tokens, train, tok)
                moved = np.flatnonzero(tokens != val)
                _log(opts, f"C1 probe: running again with the validation tokens after {int(moved[0]) - 1:,} replaced"
                     if moved.size else "C1 probe: running again on the same tokens (control: run-to-run noise)")
                try:
                    pres, praw, _ = run_traced(opts, pds, base, tag, env, launch)
                except TraceUnreadable as e:
                    pres, praw = e.res, None
                runs[tag] = pres
                if praw is None or pres.exit_code != 0 or tamper_evidence(pres):
                    return np.full(tokens.size, np.nan)
                try:
                    d = derive(Ledger(praw), base / f"ledger-{tag}", opts.reported_label)
                    return ledger_nll(d.path)
                except Exception:  # hostile input: the probe cannot compare
                    return np.full(tokens.size, np.nan)

            probe = future_perturbation(eval_fn, val, ds.vocab, atol=atol, cuts=opts.probe_cuts, control=atol > 0,
                                        what=f"{opts.path.name} run again per cut on {device.describe()}"
                                             + (f" (GPU kernels are not bit-reproducible: tolerance {atol:g})"
                                                if atol and device.type == "cuda" else ""))
            result.probes.append(_probe_note(probe, runs))
            audit.probe_atol = atol
        return _keep(audit, opts, base)
    except BaseException:
        if opts.keep is None:
            shutil.rmtree(base, ignore_errors=True)
        raise


class TraceUnreadable(Exception):
    """The trace a run left cannot be read (malformed, or files the harness refuses): a FAIL, not an error."""

    def __init__(self, res, why: str):
        super().__init__(why)
        self.res = res


def containment_checks(res) -> list[Check]:
    """What the sandbox refused, as evidence: writes outside the work directory (WARN: a person should look; the
    network attempts are PG-NET findings), and trace files the harness would not read (FAIL)."""
    out = []
    if res.write_attempts:
        shown = ", ".join(res.write_attempts[:5]) + (f", ... ({len(res.write_attempts)} in all)"
                                                    if len(res.write_attempts) > 5 else "")
        out.append(Check("contained-writes", "DATA", "WARN", f"{len(res.write_attempts)} write(s) outside the work "
                         f"directory, refused by the sandbox: {shown}"))
    if res.collect_problems:
        out.append(Check("trace-files", "DATA", "FAIL", "the run's trace holds what the harness refuses to read "
                         "(planted in the work directory): " + "; ".join(res.collect_problems[:5])))
    return out


def tamper_evidence(res) -> list[Check]:
    """The tracer's own evidence that its instrumentation was disturbed (META "tamper" events, see
    harness/tracer/scorefirst_tamper.py), and a run that ended normally without the tracer closing its ledger
    (its exit handler removed or bypassed). One FAIL per condition the trace proves: none can be trusted."""
    trace = res.collected.get(TRACE_DIR)
    ranks = [p for p in trace.iterdir() if RANK_DIR.match(p.name)] if trace is not None and trace.is_dir() else []
    found: list[str] = []
    for r in sorted(ranks, key=lambda p: int(p.name[4:])):
        try:
            metas = Ledger(r).metas
        except Exception as e:  # hostile input: reported by the trace checks
            found.append(f"{r.name}: unreadable ledger ({type(e).__name__})")
            continue
        for m in metas:
            if isinstance(m, dict) and m.get("event") == "tamper":
                found.append(f"{r.name}: {str(m.get('detail'))[:300]} (at {str(m.get('where'))[:80]})")
        if res.exit_code == 0 and not res.killed and not any(isinstance(m, dict) and m.get("event") == "trace-end"
                                                             for m in metas):
            found.append(f"{r.name}: the run ended normally but the tracer never closed its ledger (its exit "
                         f"handler was removed or bypassed)")
    if not found:
        return []
    msg = ("the instrumentation was disturbed, so nothing the trace shows can be trusted: "
           + "; ".join(dict.fromkeys(found[:6])))
    return [Check("instrumentation", c, "FAIL", msg) for c in ("C1", "C2", "C3", "C4")]


def guard_checks(res) -> list[Check]:
    """A FAIL when the guard's records cannot be trusted: it never reported its start (it was not installed), or its
    channel shows tampering (harness.guard_channel). Nothing when they can."""
    problems = list(res.guard_problems)
    if not res.guarded:
        problems.append("no guarded process reported its start: the guard was not installed, or its channel was "
                        "cut before it could report")
    if not problems:
        return []
    return [Check("guard-log", "DATA", "FAIL", "the guard's record of network attempts and outside writes cannot be "
                  "trusted: " + "; ".join(problems))]


def _probe_note(probe: Probe, runs: dict) -> Probe:
    failed = [r for r in runs.values() if r.exit_code != 0]
    if failed:
        r = failed[0]
        probe.verdict = Verdict.WARN
        probe.message = (f"the perturbed run failed (exit code {r.exit_code}"
                         f"{', ' + r.killed if r.killed else ''}): {_last_lines(r.stderr)}")
    return probe


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")


def _last_lines(text: str, n: int = 3) -> str:
    """The end of a failed run's output; under torchrun, whose own report of a failed worker comes last, the last
    error line a worker printed."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if "ChildFailedError" in text:
        errors = [ln.strip() for ln in lines if _ERROR_LINE.match(ln.strip()) and "ChildFailedError" not in ln]
        if errors:
            return errors[-1][:600]
    return " | ".join(lines[-n:])[:600] or "(no output)"


def _keep(audit: ScriptAudit, opts: ScriptOptions, base: Path) -> ScriptAudit:
    """Move the run folder to --ledger-dir (or delete it); the ledger path in the result follows. The work
    directories go first: what a script left there (FIFOs, symlinks) is never copied; the trace was already
    copied out of them as hostile input (``collected-*``)."""
    for work in base.glob("work-*"):
        shutil.rmtree(work, ignore_errors=True)
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
    from audits.registry import rule_by_id
    from audits.results import Finding, FileResult, fingerprint
    from harness.crosscheck import agreement

    dyn = audit.result
    dyn.agreement = agreement(static, dyn)
    static.dynamic = dyn
    if not audit.sandbox or not audit.sandbox.network_attempts:
        return
    folder, name = _entry(Path(dyn.script))
    script = str(folder / name)
    fr = next((f for f in static.files if f.path.endswith(name)), None)
    if fr is None:
        fr = FileResult(path=script)
        static.files.append(fr)
    net = rule_by_id("PG-NET")  # the static rule's metadata: one catalogue entry for both kinds of evidence
    for i, what in enumerate(audit.sandbox.network_attempts):
        msg = f"network attempt during the dynamic run, blocked by the sandbox: {what}"
        fr.findings.append(Finding(
            rule_id=net.id, rule_name=net.name, conditions=list(net.conditions), severity=net.severity,
            confidence=net.confidence, message=msg, path=fr.path, line=1, column=1, end_line=1, end_column=1,
            snippet="(dynamic run)", fingerprint=fingerprint(net.id, fr.path, "dynamic:" + what, i)))


def run_for_results(opts, targets, results, env_settings) -> None:
    """``--dynamic`` (`opts`: a harness.run.DynamicOptions): run every target's script and attach the dynamic section
    to its result."""
    env = {s.key: s.value for s in env_settings}
    for target, result in zip(targets, results):
        if len(target.paths) != 1:
            raise ValueError(f"--dynamic needs one file or folder per target, got {len(target.paths)} for "
                             f"{target.name}")
        audit = audit_script(opts.for_script(Path(target.paths[0]), env, target.name))
        audit.result.script = target.name
        attach(result, audit)


def format_terminal(results) -> str:
    """The dynamic sections of the results, for the terminal (after the static output)."""
    from harness.crosscheck import explain

    out = []
    for r in results:
        dyn = r.dynamic
        if dyn is None:
            continue
        d = dyn.to_dict()
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
        out.append("  dynamic verdict: " + " ".join(f"{c} {v or '-'}" for c, v in dyn.condition_verdicts().items())
                   + f" -> {dyn.overall()}")
    return "\n".join(out) + ("\n" if out else "")


def decide(results, code: int, reason: str, fail_on: str, exit_zero: bool) -> tuple[int, str]:
    """Fold the dynamic verdicts into the exit code: a dynamic FAIL (or WARN with --fail-on warning/info) gates
    like an error finding; exit 2 (could not audit) is never masked."""
    if code == 2:
        return code, reason
    gate = {"error": (Verdict.FAIL,), "warning": (Verdict.FAIL, Verdict.WARN),
            "info": (Verdict.FAIL, Verdict.WARN)}[fail_on]
    bad = []
    for r in results:
        if r.dynamic is not None:
            bad += [f"{c} {v}" for c in CHECK_CONDITIONS if (v := r.dynamic.verdict_of(c)) in gate]
    if not bad:
        return code, reason
    why = f"dynamic audit: {', '.join(sorted(set(bad)))}"
    if exit_zero:
        return 0, f"{reason}; {why}; --exit-zero"
    return 1, why if code == 0 else f"{reason}; {why}"
