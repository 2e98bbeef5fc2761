"""Read train logs in the official train_gpt.py grammar (and what `reference_model.runlog` writes).

The grammar is line-oriented `key:value` tokens after an optional label (REFERENCE_SPEC §3.6-§3.7, §6):

    <the script's own source>                      official scripts log their code first, then a line of '='
    ====================================================================================================
    val_loader:shards pattern=... tokens:62021632   header: config, token count, seed (`seed:1337`)
    model_params:26829913
    step:1/20000 train_loss:6.9143 train_time:83ms step_avg:83.50ms
    step:13780/20000 val_loss:2.0606 val_bpb:1.2172 train_time:600038ms step_avg:43.54ms
    stopping_early: wallclock_cap train_time:600038ms step:13780/20000
    gptq:hessians:66 time:4.2s                      calibration (counts toward training)
    Serialized model int8+zlib: 15815847 bytes
    Code size: 47642 bytes
    Total submission size int8+zlib: 15863489 bytes
    final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1374ms
    final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570
    ttt:done time:313.9s                            an evaluation phase timed on its own line
    legal_ttt val_loss:1.8905 val_bpb:1.1196 eval_time:409796ms

Every evaluation line (`<label> val_loss:… val_bpb:…`) after training is a *stage*; its `<label>_exact` twin, when
present, gives the full-precision values. The reported stage is the last one that is not a diagnostic.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.competition import TRAIN_OVERRUN_S

LOG_SUFFIXES = (".log", ".txt")
_NUM = r"-?(?:\d[\d,_]*+(?:\.\d++)?|\.\d++)(?:[eE][-+]?\d++)?"  # possessive: no backtracking on long digit runs
# Keys start where no key character precedes them: without the lookbehind a long run of word characters would be
# rescanned from every position (quadratic time on a hostile log line).
_TOKEN = re.compile(r"(?<![\w.+-])([A-Za-z_][\w.+-]*)[:=](\S+)")
_NUM_TOKEN = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]*+)\s*[:=]\s*(" + _NUM + r")\s*(ms|s|sec|seconds)?(?![\w/])")
MAX_LINE = 65_536  # longer lines are not read as log lines (no real log line comes close)
# `step:N/M …` (official) or a bare `N/M train_loss: …` (later official scripts); never `warmup_step:N/M`
_STEP = re.compile(r"^(?:step:(\d+)/(\d+)\b|(\d+)/(\d+)\s+(?=.*\b(?:train_loss|val_loss|loss|train_time):))")
_STOP = re.compile(r"^stopping_early\b.*?\btrain_time:(" + _NUM + r")(ms|s|m)\b(?:.*?\bstep:(\d+)/(\d+))?")
# What a logger puts before the message: an epoch timestamp (`1776142719.768 …`) or a bracketed tag (`[rank0]`).
_PREFIX = re.compile(r"^(?:\d{9,11}(?:\.\d+)?|\[[\w:.-]{1,40}\])\s+")
# `key: 1.5` is written `key:1.5` by some scripts and `key: 1.5` by others (a space after the colon).
_SPACED = re.compile(r"(?<=[A-Za-z_]):[ \t]+(?=[-+]?\.?\d)")
# A progress line of an evaluation loop (`ttt_chunk [12/1238] … time=41.2s`, `ttt_adamw:epoch 3/8 … time:45.2s`):
# its time is the loop's running total, so only the last line of a loop counts, once, and not at all when the evaluation stage
# that follows it was timed around the loop (its eval_time is at least that total).
_PROGRESS = re.compile(r"\[\s*\d+\s*/\s*\d+\s*\]|(?<![\w.])c?\d+/\d+(?![\w.])|\bbatch\s+\d+/\d+")
_MODEL = re.compile(r"^Serialized model(?:\s+(\S+?))?\s*:\s*([\d,_]+)\s*bytes", re.I)
_CODE = re.compile(r"^Code size(?:\s*\((compressed|uncompressed|raw)\))?\s*:\s*([\d,_]+)\s*bytes", re.I)
_TOTAL = re.compile(r"^Total submission size(?:\s+(\S+?))?\s*:\s*([\d,_]+)\s*bytes", re.I)
_SEED = re.compile(r"""(?:^|[\s{,"'])["']?seed["']?\s*[:=]\s*(\d+)""", re.I)
_SEED_NAME = re.compile(r"seed[_-]?(\d+)", re.I)
_TOKENS = re.compile(r"\b(?:val_tokens|target_tokens|tokens)\s*[:=]\s*([\d,_]+)")
_VAL_TOKENS = re.compile(r"\b(?:val_tokens|target_tokens)\s*[:=]\s*([\d,_]+)")
_HASH = re.compile(r"\b(code_sha256|train_gpt_sha256|script_sha256|code_md5|train_gpt_md5|script_md5)\s*[:=]\s*"
                   r"([0-9a-fA-F]{32,64})\b")
_GATES = re.compile(r"\b(within_gate|word_gate|agree2plus)\s*[:=]\s*(\d+)")
_SHARDS = re.compile(r"\btrain_shards\s*[:=]\s*(\d+)")
_SEPARATOR = re.compile(r"^={20,}\s*$")
_DIAGNOSTIC = re.compile(r"^(diagnostic|pre_?quant|prequant|pre-quant|pre_ema|post_ema|baseline)", re.I)
_CALIBRATION = re.compile(r"gptq|calib|hessian", re.I)
_EVAL_PHASE = re.compile(r"ttt|slot|precompute|prefill|ngram|n_gram|cache|lora|adapt", re.I)
_CONFIG_SKIP = re.compile(r"seed|run_id|path|dir|pattern|file|date|time|host|git|dirty|hardware|started|rank|pid",
                          re.I)


def _int(text: str) -> int:
    return int(text.replace(",", "").replace("_", ""))


def _float(text: str) -> float:
    return float(text.replace(",", "").replace("_", ""))


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _seconds(value: str, unit: str | None) -> float:
    v = _float(value)
    return v / 1000.0 if unit == "ms" else v * 60.0 if unit == "m" else v


_DURATION = re.compile(r"^(" + _NUM + r")(ms|s|m)?$")


def _duration_ms(text: str, default_unit: str = "ms") -> float | None:
    """`83ms`, `4.2s`, `9.8m` (minutes, as later official scripts print train_time) in milliseconds."""
    m = _DURATION.match(text)
    if not m:
        return None
    return _seconds(m.group(1), m.group(2) or default_unit) * 1000.0


@dataclass
class Stage:
    """One evaluation: `label val_loss:… val_bpb:…`, merged with its `_exact` twin."""

    label: str
    val_loss: float
    val_bpb: float
    line: int
    loss_decimals: int
    bpb_decimals: int
    eval_ms: float | None = None
    exact_line: int = 0
    in_training: bool = False  # a `step:N/M val_loss:…` line
    extra: str = ""  # the rest of the line (e.g. "stride:64", "ILLEGAL:PG-TTT-003 negative_control")

    @property
    def diagnostic(self) -> bool:
        return bool(_DIAGNOSTIC.match(self.label))

    @property
    def rel_precision(self) -> float:
        """Relative rounding error of val_loss/val_bpb as printed."""
        return 0.5 * 10 ** -self.loss_decimals / self.val_loss + 0.5 * 10 ** -self.bpb_decimals / self.val_bpb

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "val_loss": self.val_loss, "val_bpb": self.val_bpb, "line": self.line,
                "exact_line": self.exact_line, "eval_ms": self.eval_ms, "in_training": self.in_training}


@dataclass
class Phase:
    """A separately timed phase: calibration (training budget), an evaluation phase, or a stated total."""

    kind: str  # "calibration" | "eval" | "artifact_total" | "eval_total"
    name: str
    seconds: float
    line: int


@dataclass
class RunLog:
    path: str
    lines: int = 0
    seed: int | None = None
    seed_line: int = 0
    seed_from_name: int | None = None
    steps: int | None = None
    total_steps: int | None = None
    step_avg_ms: float | None = None
    train_ms: float | None = None
    train_line: int = 0
    stopped_early: bool = False
    training_end_line: int = 0
    model_bytes: int | None = None
    model_line: int = 0
    codec: str = ""
    code_bytes: int | None = None  # the script's own size as the run logged it (`Code size:`, `(uncompressed)`)
    code_line: int = 0
    code_compressed_bytes: int | None = None  # `Code size (compressed): N bytes`: the code as the run counted it
    code_compressed_line: int = 0
    total_bytes: int | None = None
    total_line: int = 0
    val_tokens: int | None = None
    val_tokens_line: int = 0
    model_params: int | None = None
    stages: list[Stage] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    hashes: list[tuple[str, str, int]] = field(default_factory=list)
    embedded_code: str | None = None
    embedded_code_end: int = 0
    config: dict[str, str] = field(default_factory=dict)
    gate_counters: list[tuple[str, int, int]] = field(default_factory=list)
    train_shards: tuple[int, int] | None = None

    @property
    def run_seed(self) -> int | None:
        return self.seed if self.seed is not None else self.seed_from_name

    @property
    def eval_stages(self) -> list[Stage]:
        return [s for s in self.stages if not s.in_training]

    @property
    def final(self) -> Stage | None:
        """The reported stage: the last evaluation after training that is not a diagnostic."""
        cands = [s for s in self.eval_stages if not s.diagnostic]
        return cands[-1] if cands else None

    @property
    def calibration_s(self) -> float:
        return sum(p.seconds for p in self.phases if p.kind == "calibration")

    def phase(self, kind: str) -> Phase | None:
        found = [p for p in self.phases if p.kind == kind]
        return found[-1] if found else None

    @property
    def train_total_s(self) -> float | None:
        """Training wallclock as the gate counts it by default: the loop plus calibration (`[limits] train_scope`)."""
        return self.train_seconds(count_artifact=False)

    def train_seconds(self, count_artifact: bool) -> float | None:
        """The loop plus calibration (training-data access); with `count_artifact`, a stated artifact-production
        total (quantization and compression included) wins."""
        stated = self.phase("artifact_total")
        if count_artifact and stated is not None:
            return stated.seconds
        if self.train_ms is None:
            return stated.seconds if stated is not None else None
        return round(self.train_ms / 1000.0 + self.calibration_s, 3)  # logs time to the ms; no float noise

    @property
    def eval_total_s(self) -> float | None:
        """Evaluation wallclock: every timed evaluation after training plus separately timed phases."""
        stated = self.phase("eval_total")
        if stated is not None:
            return stated.seconds
        parts = [s.eval_ms / 1000.0 for s in self.eval_stages if s.eval_ms is not None]
        parts += [p.seconds for p in self.phases if p.kind == "eval"]
        return round(sum(parts), 3) if parts else None

    @property
    def step_ms(self) -> float:
        """One training step: the logged `step_avg`, else the loop's time over its steps."""
        if self.step_avg_ms:
            return self.step_avg_ms
        if self.train_ms and self.steps:
            return self.train_ms / self.steps
        return 0.0

    def train_over(self, limit_s: float, overrun_s: float = TRAIN_OVERRUN_S, count_artifact: bool = False) -> bool:
        """Training past the limit by more than one step plus `overrun_s`: the loop checks the wallclock cap only
        after a step."""
        tr = self.train_seconds(count_artifact)
        return tr is not None and tr > limit_s + self.step_ms / 1000.0 + overrun_s

    def eval_over(self, limit_s: float) -> bool:
        ev = self.eval_total_s
        return ev is not None and ev > limit_s

    @property
    def derived_code_bytes(self) -> int | None:
        """The script's own size as the run saw it (to tie the log to the submitted file)."""
        if self.code_bytes is not None:
            return self.code_bytes
        if self.code_compressed_bytes is None and self.total_bytes is not None and self.model_bytes is not None:
            return self.total_bytes - self.model_bytes
        return None

    @property
    def counted_code_bytes(self) -> int | None:
        """The code as the run's own accounting counted it: Total minus model, else the compressed code size."""
        if self.total_bytes is not None and self.model_bytes is not None:
            return self.total_bytes - self.model_bytes
        if self.code_compressed_bytes is not None:
            return self.code_compressed_bytes
        return self.code_bytes

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        return {
            "path": self.path, "seed": self.run_seed, "steps": self.steps, "total_steps": self.total_steps,
            "step_avg_ms": self.step_avg_ms, "train_ms": self.train_ms, "calibration_s": self.calibration_s,
            "train_total_s": self.train_total_s, "eval_total_s": self.eval_total_s, "model_bytes": self.model_bytes,
            "code_bytes": self.code_bytes, "code_compressed_bytes": self.code_compressed_bytes,
            "total_bytes": self.total_bytes, "codec": self.codec,
            "val_tokens": self.val_tokens, "model_params": self.model_params,
            "stages": [s.to_dict() for s in self.stages],
            "phases": [{"kind": p.kind, "name": p.name, "seconds": p.seconds, "line": p.line} for p in self.phases],
            "final": final.to_dict() if final else None,
            "embedded_code_sha256": hashlib.sha256(self.embedded_code.encode()).hexdigest()
            if self.embedded_code is not None else None,
        }


def looks_like_log(text: str) -> bool:
    """A train log has step lines or evaluation lines of the grammar."""
    return bool(re.search(r"^step:\d+/\d+\s", text, re.M) or re.search(r"\bval_bpb:" + _NUM, text))


def _embedded_code(lines: list[str]) -> tuple[str | None, int]:
    """Official scripts log their own source first, then a line of '='; return it and the separator's line."""
    for i, line in enumerate(lines[:20000]):
        if _SEPARATOR.match(line):
            head = lines[:i]
            if any(re.match(r"^(import|from)\s+\w", ln) for ln in head):
                return "\n".join(head), i + 1
            return None, 0
        if _STEP.match(_normalize(line)):
            break
    return None, 0


@dataclass
class _Reading:
    """What parse_log carries from line to line."""

    header_done: bool = False
    last_train_line: int = 0
    pending: dict[str, Stage] = field(default_factory=dict)  # stages waiting for their `_exact` twin
    progress: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # loop -> (total s, line, lines seen)
    total_has_codec: bool = False


def parse_log(text: str, path: str) -> RunLog:
    log = RunLog(path=path)
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    log.lines = len(lines)
    m = _SEED_NAME.search(Path(path).name)
    if m:
        log.seed_from_name = int(m.group(1))
    log.embedded_code, start = _embedded_code(lines)
    log.embedded_code_end = start
    r = _Reading()
    for idx in range(start, len(lines)):
        raw = lines[idx]
        n = idx + 1
        if len(raw) > MAX_LINE:
            continue
        line = _normalize(raw)
        if not line:
            continue
        if _SEPARATOR.match(line):
            if not r.header_done:
                log.config.clear()  # what came before was the environment dump (versions, nvidia-smi)
            continue
        if _training_line(line, n, log, r) or _size_line(line, n, log, r):
            continue
        for hm in _HASH.finditer(line):
            log.hashes.append((hm.group(1), hm.group(2).lower(), n))
        for gm in _GATES.finditer(line):
            log.gate_counters.append((gm.group(1), int(gm.group(2)), n))
        shm = _SHARDS.search(line)
        if shm:
            log.train_shards = (int(shm.group(1)), n)
        if _stage_line(line, n, log, r):
            continue
        _header_line(line, n, log, r)
        _phases(line, n, log, r.progress)
    log.training_end_line = r.last_train_line
    _progress_phases(log, r.progress)
    # A stage is an evaluation of the finished model only when it comes after training.
    log.stages = [s for s in log.stages if s.in_training or s.line > r.last_train_line]
    log.phases = [p for p in log.phases if p.kind in ("artifact_total", "eval_total") or p.line > r.last_train_line]
    return log


def _training_line(line: str, n: int, log: RunLog, r: _Reading) -> bool:
    """A training step, a warm-up step or the early stop; True when the line was one."""
    sm = _STEP.match(line)
    if sm:
        r.header_done = True
        step, total = (sm.group(1), sm.group(2)) if sm.group(1) else (sm.group(3), sm.group(4))
        tokens = dict(_TOKEN.findall(line))
        if "val_loss" in tokens and "val_bpb" in tokens:
            st = _stage(line, f"step:{step}", tokens, n)
            if st is not None:
                st.in_training = True
                log.stages.append(st)
        log.steps, log.total_steps = int(step), int(total)
        # `train_time:` (official), `t:` (some forks); a bare number is milliseconds
        elapsed = tokens.get("train_time", tokens.get("t"))
        ms = _duration_ms(elapsed) if elapsed else None
        if ms is not None:
            log.train_ms, log.train_line = ms, n
        avg = tokens.get("step_avg", tokens.get("avg"))
        avg_ms = _duration_ms(avg) if avg else None
        if avg_ms is not None:
            log.step_avg_ms = avg_ms
        r.last_train_line = n
        return True
    if line.startswith("warmup_step"):
        r.header_done = True
        return True
    stop = _STOP.match(line)
    if stop:
        r.header_done = True
        log.stopped_early = True
        log.train_ms = _seconds(stop.group(1), stop.group(2)) * 1000.0
        log.train_line = n
        if stop.group(3):
            log.steps, log.total_steps = int(stop.group(3)), int(stop.group(4))
        r.last_train_line = n
        return True
    return False


def _size_line(line: str, n: int, log: RunLog, r: _Reading) -> bool:
    """The serialized model, code and total submission sizes; True when the line was one."""
    mm = _MODEL.match(line)
    if mm:
        r.header_done = True
        # the compressed model (`Serialized model int6+lzma: …`) over the raw one (`Serialized model: …`)
        if mm.group(1) or not log.codec:
            log.model_bytes, log.model_line, log.codec = _int(mm.group(2)), n, mm.group(1) or ""
        return True
    cm = _CODE.match(line)
    if cm:
        if (cm.group(1) or "").lower() == "compressed":
            log.code_compressed_bytes, log.code_compressed_line = _int(cm.group(2)), n
        else:
            log.code_bytes, log.code_line = _int(cm.group(2)), n
        return True
    tm = _TOTAL.match(line)
    if tm:
        if tm.group(1) or not r.total_has_codec:
            log.total_bytes, log.total_line = _int(tm.group(2)), n
            r.total_has_codec = bool(tm.group(1))
        return True
    return False


def _stage_line(line: str, n: int, log: RunLog, r: _Reading) -> bool:
    """An evaluation line (`<label> val_loss:… val_bpb:…`), or the `_exact` twin of one; True when it was."""
    tokens = dict(_TOKEN.findall(line))
    if "val_loss" not in tokens or "val_bpb" not in tokens:
        return False
    label = _label(line)
    base = label[:-len("_exact")] if label.endswith("_exact") else None
    if base is not None and base in r.pending:
        st = r.pending.pop(base)
        twin = _stage(line, base, tokens, n)
        if twin is not None:
            st.val_loss, st.val_bpb = twin.val_loss, twin.val_bpb
            st.loss_decimals, st.bpb_decimals = twin.loss_decimals, twin.bpb_decimals
            st.exact_line = n
        return True
    st = _stage(line, base or label, tokens, n)
    if st is not None:
        if base is not None:
            st.exact_line = n
        log.stages.append(st)
        r.pending[st.label] = st
    return True


def _header_line(line: str, n: int, log: RunLog, r: _Reading) -> None:
    """The validation token count, and before training the config tokens and the seed."""
    if log.val_tokens is None:
        tk = (_TOKENS if not r.header_done else _VAL_TOKENS).search(line)
        if tk:
            log.val_tokens, log.val_tokens_line = _int(tk.group(1)), n
    if not r.header_done:
        _config_tokens(line, log)
        if log.seed is None:
            sd = _SEED.search(line)
            if sd:
                log.seed, log.seed_line = int(sd.group(1)), n


def _normalize(raw: str) -> str:
    """The message of a log line: no logger prefix, `key:value` written without a space after the colon."""
    return _SPACED.sub(":", _PREFIX.sub("", raw.strip(), count=1))


def _label(line: str) -> str:
    """The words before the first `key:value` token ("final_int6_sliding_window", "DIAGNOSTIC post_ema")."""
    words = []
    for w in line.split():
        if _TOKEN.fullmatch(w) or w.endswith(":"):
            break
        words.append(w)
    return " ".join(words) or line.split(":", 1)[0]


def _stage(line: str, label: str, tokens: dict[str, str], n: int) -> Stage | None:
    try:
        vl_raw, vb_raw = tokens["val_loss"], tokens["val_bpb"]
        vl, vb = _float(vl_raw), _float(vb_raw)
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(vl) and math.isfinite(vb)) or vl <= 0 or vb <= 0:
        return None
    eval_ms = None
    if "eval_time" in tokens:
        raw = tokens["eval_time"]
        try:
            eval_ms = _float(raw[:-2]) if raw.endswith("ms") else _float(raw.rstrip("s")) * 1000.0
        except ValueError:
            eval_ms = None
    extra = " ".join(w for w in line.split()[1:] if not re.match(r"(val_loss|val_bpb|eval_time):", w))
    return Stage(label=label, val_loss=vl, val_bpb=vb, line=n, loss_decimals=_decimals(vl_raw),
                 bpb_decimals=_decimals(vb_raw), eval_ms=eval_ms, extra=extra)


def _config_tokens(line: str, log: RunLog) -> None:
    """Header settings that identify the run's configuration (everything but the seed and machine details)."""
    if line.startswith("hyperparameters:"):
        try:
            data = json.loads(line.split(":", 1)[1])
        except ValueError:
            data = None
        if isinstance(data, dict):
            for k, v in _flatten(data):
                if not _CONFIG_SKIP.search(k):
                    log.config[k] = json.dumps(v)
            return
    for k, v in _TOKEN.findall(line):
        if k == "model_params":
            try:
                log.model_params = _int(v)
            except ValueError:
                pass
        if not _CONFIG_SKIP.search(k):
            log.config[k] = v


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _phases(line: str, n: int, log: RunLog, progress: dict[str, tuple[float, int, int]]) -> None:
    first = line.split()[0].lower() if line.split() else ""
    if _PROGRESS.search(line) and _EVAL_PHASE.search(first):
        for m in _NUM_TOKEN.finditer(line):
            if m.group(1).lower() in ("time", "elapsed"):
                name = re.split(r"[:=\[]", first, maxsplit=1)[0]
                seen = progress.get(name, (0.0, 0, 0))[2]
                progress[name] = (_seconds(m.group(2), m.group(3)), n, seen + 1)
        return
    if re.match(r"^[\w.+-]+[:=]-?\.?\d", first):  # `artifact_production_wallclock:825.4s`: the key names the line
        first = re.split(r"[:=]", first, maxsplit=1)[0]
    for m in _NUM_TOKEN.finditer(line):
        key, value, unit = m.group(1), m.group(2), m.group(3)
        k = key.lower()
        name = f"{first} {key}" if not first.startswith(k) else first
        if re.search(r"artifact_production|artifact_wallclock|train_total_time|total_train_time", k):
            log.phases.append(Phase("artifact_total", name, _seconds(value, unit), n))
        elif re.search(r"total_eval_time|eval_total_time|eval_wallclock|eval_total", k):
            log.phases.append(Phase("eval_total", name, _seconds(value, unit), n))
        elif k == "time" or k.endswith("_time") or k.endswith("time_s") or k.endswith("time_ms") or k == "duration":
            if k in ("train_time", "eval_time", "elapsed"):
                continue
            if k.endswith("time_ms"):
                unit = "ms"
            where = f"{first} {k}"
            if _CALIBRATION.search(where):
                log.phases.append(Phase("calibration", name, _seconds(value, unit), n))
            elif _EVAL_PHASE.search(where):
                log.phases.append(Phase("eval", name, _seconds(value, unit), n))


def _progress_phases(log: RunLog, progress: dict[str, tuple[float, int, int]]) -> None:
    """The last running total of each evaluation loop, unless the stage after it was timed around the loop."""
    for name, (seconds, line, count) in progress.items():
        if line <= log.training_end_line:
            continue
        after = [s for s in log.stages if s.line > line and not s.in_training and s.eval_ms is not None]
        if after and after[0].eval_ms / 1000.0 >= seconds - 1.0:  # type: ignore[operator]
            continue
        log.phases.append(Phase("eval", f"{name} loop ({count} progress lines)", seconds, line))


def find_logs(folder: Path) -> list[Path]:
    """Train logs of a submission folder: *.log/*.txt at its top level that read as logs; else those below it."""
    def candidates(paths):
        out = []
        for p in sorted(paths):
            if not p.is_file() or p.is_symlink() or p.suffix.lower() not in LOG_SUFFIXES:
                continue
            if p.name.lower() in ("requirements.txt", "license.txt"):
                continue
            try:
                with open(p, "rb") as fh:
                    head = fh.read(4_000_000).decode("utf-8", "replace")
            except OSError:
                continue
            if looks_like_log(head):
                out.append(p)
        return out

    top = candidates(folder.iterdir())
    if top:
        return top
    return candidates(p for p in folder.rglob("*") if ".git" not in p.parts)


def read_log(path: Path, display: str) -> RunLog:
    data = path.read_bytes()
    return parse_log(data.decode("utf-8", "replace"), display)


def read_logs(folder: Path, prefix: str = "") -> list[RunLog]:
    """Every train log of a submission folder, parsed, named `prefix` + its path below the folder."""
    return [read_log(p, prefix + p.relative_to(folder).as_posix()) for p in find_logs(folder)]
