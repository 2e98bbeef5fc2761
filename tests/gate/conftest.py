"""Fixtures for the gate tests: real git repositories and submission folders written fresh by the tests.

A `Repo` is a real git repository in a temporary folder: `main` holds an older record, and each test commits a
pull-request branch on top of it. `submission(...)` writes a complete submission folder (README.md with a run
command, submission.json, train_gpt.py, one train log per seed) whose numbers are consistent by construction, so a
test changes exactly the one thing it is about. Logs come in two dialects: the official train_gpt.py one (the
script's source, a line of '=', the environment, then the run) and the one `reference_model.runlog` writes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "audits" / "examples" / "records" / "track_10min_16mb"
VAL_TOKENS = 62_021_632
VAL_BYTES = 151_080_000
TRACK = "track_10min_16mb"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}

# A legal evaluation: score under no_grad, nothing trains on validation tokens.
CLEAN_SCRIPT = textwrap.dedent('''\
    import os
    import torch

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    print(eval_val(model, val_tokens))
''')

# Train-then-score on validation tokens (PG-TTT-001, C3), switched on by the README's run command.
ILLEGAL_SCRIPT = textwrap.dedent('''\
    import os
    import torch

    def ttt_adapt(model, opt, val_tokens):
        for epoch in range(3):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward()
            opt.step()

    def eval_val(model, val_tokens):
        loss_sum = 0.0
        with torch.no_grad():
            loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
        return loss_sum

    val_tokens = load_validation_tokens("fineweb_val_*.bin")
    if int(os.environ.get("TTT_ENABLED", "0")):
        ttt_adapt(model, opt, val_tokens)
    print(eval_val(model, val_tokens))
''')
ILLEGAL_STEP_LINE = 8


def bpb_of(loss: float, byte_scale: float = 1.0) -> float:
    return loss * VAL_TOKENS / (math.log(2) * VAL_BYTES * byte_scale)


@dataclass
class Run:
    """One seed's run, as its log will state it."""

    seed: int
    loss: float
    model_bytes: int = 15_870_000
    train_ms: float = 600_010.0
    step_avg_ms: float = 83.4
    steps: int = 7194
    calibration_s: float | None = None
    eval_ms: tuple[float, ...] = (74_000.0, 409_000.0)
    ttt_phase_s: float | None = None  # a separately timed TTT phase line ("ttt:done time:…s")
    code_size: int | None = None  # what the log says; None = the real script size
    byte_scale: float = 1.0  # >1 simulates an inflated BPB denominator
    extra_header: tuple[str, ...] = ()
    model_params: int = 26_829_913
    matrix_lr: float = 0.025
    gate_counters: str | None = None
    stages: tuple[str, ...] = ("final_int6_sliding_window", "legal_ttt")


def official_log(run: Run, script: str) -> str:
    """A log in the official train_gpt.py dialect: code, '=', environment, '=', header, run, export, evaluations."""
    code = run.code_size if run.code_size is not None else len(script.encode())
    lines = [script.rstrip("\n"), "=" * 100, "Running Python 3.12.3", "Running PyTorch 2.9.1+cu128",
             "| NVIDIA H100 80GB HBM3  Driver Version: 570.86.15  CUDA Version: 12.8 |", "=" * 100,
             "val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/tokenizers/fineweb_1024_bpe.model",
             "train_loader:dataset:fineweb10B_sp1024 train_shards:80",
             f"val_loader:shards pattern=./data/datasets/fineweb10B_sp1024/fineweb_val_*.bin tokens:{VAL_TOKENS}",
             f"model_params:{run.model_params}", "world_size:8 grad_accum_steps:1",
             f"tie_embeddings:True embed_lr:0.035 matrix_lr:{run.matrix_lr} scalar_lr:0.025",
             "train_batch_tokens:786432 train_seq_len:2048 iterations:20000 warmup_steps:20 "
             "max_wallclock_seconds:600.000",
             *run.extra_header, f"seed:{run.seed}"]
    lines += [f"warmup_step:{i}/20" for i in (1, 2, 20)]
    lines.append(f"step:0/20000 val_loss:6.9357 val_bpb:{bpb_of(6.9357):.4f} train_time:0ms step_avg:0.02ms")
    for s in (1, 2, 500, 7000):
        lines.append(f"step:{s}/20000 train_loss:{2.0 + 1 / s:.4f} train_time:{s * run.step_avg_ms:.0f}ms "
                     f"step_avg:{run.step_avg_ms:.2f}ms")
    end_bpb = bpb_of(run.loss + 0.02, run.byte_scale)
    lines.append(f"step:{run.steps}/20000 val_loss:{run.loss + 0.02:.4f} val_bpb:{end_bpb:.4f} "
                 f"train_time:{run.train_ms:.0f}ms step_avg:{run.step_avg_ms:.2f}ms")
    lines.append(f"stopping_early: wallclock_cap train_time:{run.train_ms:.0f}ms step:{run.steps}/20000")
    lines.append("peak memory allocated: 21519 MiB reserved: 22000 MiB")
    if run.calibration_s is not None:
        lines.append(f"gptq:hessians:66 time:{run.calibration_s:.1f}s")
    lines += ["Serialized model: 106158518 bytes", f"Code size: {code} bytes",
              f"Total submission size: {106158518 + code} bytes",
              f"Serialized model int6+lzma: {run.model_bytes} bytes",
              f"Total submission size int6+lzma: {run.model_bytes + code} bytes"]
    if run.gate_counters:
        lines.append(run.gate_counters)
    if run.ttt_phase_s is not None:
        lines.append(f"ttt:done time:{run.ttt_phase_s:.1f}s")
    for i, (label, ms) in enumerate(zip(run.stages, run.eval_ms, strict=False)):
        loss = run.loss + 0.004 * (len(run.stages) - 1 - i)
        b = bpb_of(loss, run.byte_scale)
        extra = " stride:64" if "sliding" in label else ""
        lines.append(f"{label} val_loss:{loss:.4f} val_bpb:{b:.4f}{extra} eval_time:{ms:.0f}ms")
        lines.append(f"{label}_exact val_loss:{loss:.8f} val_bpb:{b:.8f}")
    return "\n".join(lines) + "\n"


def runlog_log(run: Run, script: str) -> str:
    """A log written with reference_model.runlog and the reference runner's header (the grammar it shares)."""
    from reference_model import runlog

    code = run.code_size if run.code_size is not None else len(script.encode())
    hyper = json.dumps({"model": {"num_layers": 11}, "seed": run.seed})
    header = ["scorefirst 0.1.0 run-reference config:record ttt:score-first LEGAL", "torch:2.13.0 numpy:2.4.6",
              "git:abc123 dirty:False", f"hyperparameters: {hyper}",
              f"val_tokens:{VAL_TOKENS} data_path:/data/fineweb tokenizer:/data/tok.model", f"seed:{run.seed}",
              f"model_params:{run.model_params}", "world_size:8 grad_accum_steps:1"]
    lines = list(header)
    for s in (1, 2, 7000):
        lines.append(runlog.train_line(s, 20000, 2.0 + 1 / s, s * run.step_avg_ms, s))
    lines.append(runlog.val_line(run.steps, 20000, run.loss + 0.02, bpb_of(run.loss + 0.02, run.byte_scale),
                                 run.train_ms, run.steps))
    lines.append(f"stopping_early: wallclock_cap train_time:{run.train_ms:.0f}ms step:{run.steps}/20000")
    lines.append("peak memory allocated: 21519 MiB reserved: 22000 MiB")
    pre = {"val_loss": run.loss + 0.05, "val_bpb": bpb_of(run.loss + 0.05, run.byte_scale)}
    lines += runlog.eval_lines("DIAGNOSTIC post_ema", pre, 9000.0)
    lines += [f"Serialized model int6+lzma: {run.model_bytes} bytes", f"Code size: {code} bytes",
              f"Total submission size int6+lzma: {run.model_bytes + code} bytes"]
    for i, (label, ms) in enumerate(zip(run.stages, run.eval_ms, strict=False)):
        loss = run.loss + 0.004 * (len(run.stages) - 1 - i)
        res = {"val_loss": loss, "val_bpb": bpb_of(loss, run.byte_scale)}
        lines += runlog.eval_lines(label, res, ms, "stride:64" if "sliding" in label else "")
    return "\n".join(lines) + "\n"


@dataclass
class Submission:
    """A submission folder's files: `files()` gives {relative path: text}."""

    name: str = "2026-03-25_11L_LegalTTT"
    track: str = TRACK
    script: str = CLEAN_SCRIPT
    runs: list[Run] = field(default_factory=lambda: [Run(1337, 1.8905), Run(42, 1.8894), Run(2025, 1.8916)])
    dialect: str = "official"
    readme_env: str = "TTT_ENABLED=1 "
    meta: dict[str, Any] = field(default_factory=dict)  # overrides of submission.json fields (None deletes)
    raw_json: str | None = None  # submission.json text as is
    omit: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return f"records/{self.track}/{self.name}"

    def submission_json(self) -> dict[str, Any]:
        code = len(self.script.encode())
        finals = [(r.loss, bpb_of(r.loss, r.byte_scale)) for r in self.runs] or [(1.89, bpb_of(1.89))]
        data: dict[str, Any] = {
            "author": "Test Author", "github_id": "test-author", "name": "11L legal TTT",
            "blurb": "Score-first chunked TTT on the 11L stack.", "date": "2026-03-25",
            "val_loss": round(sum(x for x, _ in finals) / len(finals), 5),
            "val_bpb": round(sum(y for _, y in finals) / len(finals), 5),
            "bytes_total": max([r.model_bytes for r in self.runs] or [15_870_000]) + code, "bytes_code": code,
            "seeds": [r.seed for r in self.runs], "track": self.track.removeprefix("track_"),
        }
        for k, v in self.meta.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return data

    def files(self) -> dict[str, str]:
        write = official_log if self.dialect == "official" else runlog_log
        out = {
            "README.md": f"# {self.name}\n\n## Run\n\n```bash\n{self.readme_env}torchrun --standalone "
                         "--nproc_per_node=8 train_gpt.py\n```\n",
            "submission.json": self.raw_json if self.raw_json is not None else
            json.dumps(self.submission_json(), indent=2) + "\n",
            "train_gpt.py": self.script,
        }
        for r in self.runs:
            out[f"train_seed{r.seed}.log"] = write(r, self.script)
        for name in self.omit:
            out.pop(name, None)
        out.update(self.extra)
        return {f"{self.folder}/{k}": v for k, v in out.items()}


class Repo:
    """A real git repository: `main` has a README and one older record; tests commit PR branches on top."""

    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def write(self, files: dict[str, str | bytes]) -> None:
        for rel, text in files.items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                p.write_bytes(text)
            else:
                p.write_text(text, encoding="utf-8")

    def commit(self, message: str, files: dict[str, str | bytes] | None = None, delete: tuple[str, ...] = ()) -> str:
        if files:
            self.write(files)
        for rel in delete:
            self.git("rm", "-q", "-r", rel)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def branch(self, name: str, start: str = "main") -> None:
        self.git("checkout", "-q", "-B", name, start)

    def pr(self, sub: Submission | None = None, files: dict[str, str | bytes] | None = None, name: str = "pr",
           delete: tuple[str, ...] = ()) -> str:
        """A PR branch from main adding `sub` (and `files`); returns its head commit."""
        self.branch(name)
        allf: dict[str, str | bytes] = dict(sub.files()) if sub else {}
        allf.update(files or {})
        head = self.commit(f"PR {name}", allf, delete)
        self.git("checkout", "-q", "main")
        return head


@pytest.fixture
def repo(tmp_path) -> Repo:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    r = Repo(tmp_path / "parameter-golf")
    r.path.mkdir()
    r.git("init", "-q", "-b", "main")
    old = Submission(name="2026-03-20_Old_Record")
    r.commit("base", {"README.md": "# Parameter Golf\n", **old.files()})
    return r


@pytest.fixture(scope="session")
def gate_cache(tmp_path_factory):
    """One audit cache for the whole session: the same scripts are audited once."""
    from audits.api import tool_version
    from audits.cache import Cache

    d = tmp_path_factory.mktemp("gate-cache")
    return Cache(d, tool_version())


@pytest.fixture
def run_gate(gate_cache) -> Callable[..., Any]:
    """run_gate(repo, head="pr", **config overrides) -> GateResult (in-process, shared audit cache)."""
    from harness.gate import GateConfig, GateOptions
    from harness.gate import run_gate as _run

    def go(repo: Repo, head: str = "pr", base: str = "main", config: GateConfig | None = None, **kw):
        cfg = config or GateConfig()
        for k, v in kw.items():
            setattr(cfg, k, v)
        return _run(GateOptions(repo=repo.path, base=base, head=head, config=cfg, cache_dir=gate_cache, jobs=1))

    return go


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    @property
    def last_err_line(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def gate_cli(capsys, monkeypatch, gate_cache):
    """`scorefirst gate ARGS` in-process with the session's audit cache."""
    from harness.cli import main

    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", str(gate_cache.directory))
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)

    def go(*args: Any) -> CliRun:
        capsys.readouterr()
        code = main(["gate", *[str(a) for a in args]])
        cap = capsys.readouterr()
        return CliRun(code, cap.out, cap.err)

    return go


@pytest.fixture
def make() -> Callable[..., Submission]:
    """make(**fields) -> Submission (tests get the builder through a fixture: --import-mode=importlib)."""
    return Submission


@pytest.fixture
def mkrun() -> Callable[..., Run]:
    return Run


@pytest.fixture
def scripts() -> dict[str, Any]:
    return {"clean": CLEAN_SCRIPT, "illegal": ILLEGAL_SCRIPT, "illegal_step_line": ILLEGAL_STEP_LINE,
            "official_log": official_log, "runlog_log": runlog_log, "bpb_of": bpb_of, "val_tokens": VAL_TOKENS,
            "val_bytes": VAL_BYTES, "examples": EXAMPLES}
