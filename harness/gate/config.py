"""Gate settings: limits, tolerances, the record to beat and the significance policy.

Defaults follow the competition rules (RULES.md §2). A small TOML (or JSON) file given with `--config` overrides
them; `--record-bpb` and `--record-logs` state the record on the command line. Unknown keys are refused, so a
typo never silently leaves a default in force.

    [record]                       # the current record (the frontier row) to beat
    name = "PR #1855"
    val_bpb = [1.0611, 1.0609, 1.0614]   # per seed, or one number
    val_loss = [2.7392, 2.7388, 2.7401]  # optional, nats per token; else converted from bpb
    logs = "records/track_10min_16mb/2026-04-27_X"   # or: parse that record's train logs

    [significance]
    blocking = "welch"        # which policy blocks: readme | welch | both | either | none
    min_seeds = 3
    readme_margin_nats = 0.005
    readme_alpha = 0.01
    welch_alpha = 0.25

    [limits]
    artifact_bytes = 16000000
    train_seconds = 600
    eval_seconds = 600
    code_bytes = "logged"      # logged (the run's own accounting) | submitted (train_gpt.py) | folder (+ other .py)
    train_scope = "data-access"   # data-access (loop + calibration) | artifact (+ a stated artifact-production total)

    [bytes]
    canonical_val_bytes = 151080000
    relative_tolerance = 0.005

    [tolerance]
    val_bpb = 0.0001
    val_loss = 0.0001
    train_overrun_seconds = 0.5   # past the training cap, on top of one step
    log_mismatch = "warning"      # logs, script and submission.json disagree (not on the score): warning | error

    [tracks]
    timed = ["track_10min_16mb"]
    untimed = ["track_non_record_16mb"]

    cutoff = "2026-05-02"      # records dated later get a warning (PG-CHRONO)
    strict_schema_since = "2026-05-02"   # submission.json dated earlier: launch-era template, problems are warnings
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.competition import ARTIFACT_LIMIT, EVAL_LIMIT_S, TRAIN_LIMIT_S, TRAIN_OVERRUN_S

# The validation split's bytes (the BPB denominator). REFERENCE_SPEC §2.3 gives 2.4359 bytes/token over the
# 62,021,632-token sp1024 split and 3.7266 over the 40.54M-token sp8192 split: both about 151.08 million bytes,
# since the text is the same. The known denominator bugs are far larger than the tolerance: +17 % (double-counted
# leading space, #1719), +4 % (byte-fallback counted as 3 bytes, #1289), +9 % (CaseOps transformed bytes, #2138).
CANONICAL_VAL_BYTES = 151_080_000
VAL_BYTES_REL_TOL = 0.005
BLOCKING = ("readme", "welch", "both", "either", "none")
# How the artifact's code is counted. "logged": as the run's own accounting counted it (its `Total submission size`
# line, which later scripts compute from the compressed code), as the maintainers accepted merged records;
# "submitted": train_gpt.py's bytes as submitted; "folder": that plus every other .py file of the folder.
CODE_COUNTING = ("logged", "submitted", "folder")
# Logs, script and submission.json that disagree where the score is not at stake (a log of an edited script, a seed
# named differently in the file name, bytes_code/bytes_total metadata, a listed seed without a log): the maintainers
# asked for matching logs only where the score was in doubt (#86), so by default a person looks ("warning");
# "error" blocks.
LOG_MISMATCH = ("warning", "error")
# What the 600 s training budget covers. "data-access": the loop plus calibration that reads training data (Hessian
# collection), as the maintainers accepted in #1868, whose logs state artifact_production_wallclock 825-1121 s with
# quantization and compression after the data access; "artifact": a stated artifact-production total counts too
# (valerio-oai on #609: "I would not regard 'artifact creation' as untimed").
TRAIN_SCOPE = ("data-access", "artifact")


class ConfigError(ValueError):
    """A one-line reason the configuration cannot be used (exit 2)."""


@dataclass
class Record:
    """The record to beat: per-seed val_bpb (and val_loss when known)."""

    name: str
    val_bpb: list[float]
    val_loss: list[float] | None = None
    source: str = ""  # "--record-bpb", "--record-logs DIR", "config FILE", "submission.json compared_to"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateConfig:
    artifact_limit: int = ARTIFACT_LIMIT
    train_limit_s: float = TRAIN_LIMIT_S
    eval_limit_s: float = EVAL_LIMIT_S
    canonical_val_bytes: float = CANONICAL_VAL_BYTES
    val_bytes_rel_tol: float = VAL_BYTES_REL_TOL
    bpb_tolerance: float = 1e-4
    loss_tolerance: float = 1e-4
    code_counting: str = "logged"
    train_scope: str = "data-access"
    log_mismatch: str = "warning"
    train_overrun_s: float = TRAIN_OVERRUN_S
    min_seeds: int = 3
    blocking: str = "welch"
    readme_margin_nats: float = 0.005
    readme_alpha: float = 0.01
    welch_alpha: float = 0.25
    timed_tracks: list[str] = field(default_factory=lambda: ["track_10min_16mb"])
    untimed_tracks: list[str] = field(default_factory=lambda: ["track_non_record_16mb"])
    cutoff: str = "2026-05-02"
    # submission.json template eras: a submission dated before this was written to the launch-era template (the
    # README asks for "name, GitHub ID, val_bpb and related metadata"; merged records of that era lack many of the
    # current template's fields), so problems are warnings; from this date on the current schema is enforced.
    strict_schema_since: str = "2026-05-02"
    record: Record | None = None
    record_logs: str | None = None  # resolved into `record` by the runner (it needs the log parser)
    source: str = "defaults"

    @property
    def tracks(self) -> list[str]:
        return self.timed_tracks + self.untimed_tracks

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["record"] = self.record.to_dict() if self.record else None
        return d


_SECTIONS: dict[str, dict[str, tuple[str, Any]]] = {
    "limits": {"artifact_bytes": ("artifact_limit", int), "train_seconds": ("train_limit_s", float),
               "eval_seconds": ("eval_limit_s", float), "code_bytes": ("code_counting", CODE_COUNTING),
               "train_scope": ("train_scope", TRAIN_SCOPE)},
    "bytes": {"canonical_val_bytes": ("canonical_val_bytes", float),
              "relative_tolerance": ("val_bytes_rel_tol", float)},
    "tolerance": {"val_bpb": ("bpb_tolerance", float), "val_loss": ("loss_tolerance", float),
                  "train_overrun_seconds": ("train_overrun_s", "seconds"),
                  "log_mismatch": ("log_mismatch", LOG_MISMATCH)},
    "significance": {"blocking": ("blocking", BLOCKING), "min_seeds": ("min_seeds", int),
                     "readme_margin_nats": ("readme_margin_nats", float), "readme_alpha": ("readme_alpha", float),
                     "welch_alpha": ("welch_alpha", float)},
    "tracks": {"timed": ("timed_tracks", list), "untimed": ("untimed_tracks", list)},
}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _numbers(value: Any, where: str) -> list[float]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: expected a number or a non-empty list of numbers")
    out = [_number(v, where) for v in items]
    if any(v <= 0 for v in out):
        raise ConfigError(f"{where}: values must be positive")
    return out


def parse_record_bpb(text: str) -> Record:
    """`--record-bpb 1.0611` or `--record-bpb 1.0611,1.0609,1.0614` (per seed)."""
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"--record-bpb expects a number or comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"--record-bpb expects positive numbers, got {text!r}")
    return Record(name="stated record", val_bpb=values, source="--record-bpb")


def load_config(path: str | Path) -> GateConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"--config {p}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"--config {p}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {p}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: expected a table/object at the top level")
    return config_from_dict(data, p)


def config_from_dict(data: dict[str, Any], path: Path) -> GateConfig:
    cfg = GateConfig(source=f"--config {path}")
    for key, value in data.items():
        where = f"--config {path}: {key}"
        if key in ("cutoff", "strict_schema_since"):
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a date string (YYYY-MM-DD)")
            setattr(cfg, key, value)
            continue
        if key == "record":
            cfg.record, cfg.record_logs = _record(value, where, path)
            continue
        if key not in _SECTIONS:
            known = ", ".join(["record", "cutoff", "strict_schema_since", *_SECTIONS])
            raise ConfigError(f"{where}: unknown section (known: {known})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        for k, v in value.items():
            spec = _SECTIONS[key].get(k)
            if spec is None:
                raise ConfigError(f"{where}.{k}: unknown key (known: {', '.join(_SECTIONS[key])})")
            attr, kind = spec
            if kind is list:
                if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                    raise ConfigError(f"{where}.{k}: expected a list of track folder names")
                setattr(cfg, attr, list(v))
            elif isinstance(kind, tuple):
                if v not in kind:
                    raise ConfigError(f"{where}.{k}: expected one of {', '.join(kind)}, got {v!r}")
                setattr(cfg, attr, v)
            elif kind == "seconds":
                n = _number(v, f"{where}.{k}")
                if n < 0:
                    raise ConfigError(f"{where}.{k}: expected a number of seconds >= 0, got {v!r}")
                setattr(cfg, attr, n)
            elif kind is int:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"{where}.{k}: expected a positive integer, got {v!r}")
                setattr(cfg, attr, v)
            else:
                n = _number(v, f"{where}.{k}")
                if n <= 0:
                    raise ConfigError(f"{where}.{k}: expected a positive number, got {v!r}")
                setattr(cfg, attr, n)
    return cfg


def _record(value: Any, where: str, path: Path) -> tuple[Record | None, str | None]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(value) - {"name", "val_bpb", "val_loss", "logs"}
    if unknown:
        raise ConfigError(f"{where}.{min(unknown)}: unknown key (known: name, val_bpb, val_loss, logs)")
    name = value.get("name", "configured record")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string")
    if "logs" in value:
        if "val_bpb" in value or "val_loss" in value:
            raise ConfigError(f"{where}: give either logs or val_bpb/val_loss, not both")
        logs = value["logs"]
        if not isinstance(logs, str) or not logs:
            raise ConfigError(f"{where}.logs: expected a folder path")
        p = Path(logs)
        if not p.is_absolute():
            p = path.parent / p
        return None, str(p)
    if "val_bpb" not in value:
        raise ConfigError(f"{where}: needs val_bpb (or logs)")
    bpb = _numbers(value["val_bpb"], f"{where}.val_bpb")
    loss = _numbers(value["val_loss"], f"{where}.val_loss") if "val_loss" in value else None
    if loss is not None and len(loss) != len(bpb):
        raise ConfigError(f"{where}: val_loss has {len(loss)} values but val_bpb has {len(bpb)}")
    return Record(name=name, val_bpb=bpb, val_loss=loss, source=f"config {path}"), None
