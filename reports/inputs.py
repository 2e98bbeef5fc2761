"""Reading what a report is rendered from: stored audit results and run-reference results, never a re-run.

Accepted inputs:

* audit result JSON (`scorefirst audit --json`): one result, or `{"results": [...]}`;
* run-reference `results.json` (schema `scorefirst.reference.results/1`), or its run directory; a `run_spec.json`
  beside it adds provenance.

Audit JSON does not store the audited source unless it was written with it. When a file's source is missing, it is
read from disk under the given source roots (then the JSON's folder, the working directory and the bundled
examples), and used only when its SHA-256 matches the one recorded at audit time, so flagged lines never land on
the wrong text.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audits.results import AuditResult, FileResult
from audits.source import InputError as SourceInputError
from audits.source import decode_source
from core.competition import EVAL_LIMIT_S, TRAIN_LIMIT_S
from core.runlogs import RunLog, read_logs

REFERENCE_SCHEMA_PREFIX = "scorefirst.reference.results/"
RUN_SPEC_SCHEMA_PREFIX = "scorefirst.reference.run_spec/"


class ReportInputError(Exception):
    """An input that cannot be rendered; the message is one line and names the input."""


@dataclass
class ReferenceRun:
    results: dict[str, Any]
    run_spec: dict[str, Any] | None
    origin: str  # the path it was read from, as given


@dataclass
class Inputs:
    audits: list[AuditResult] = field(default_factory=list)
    references: list[ReferenceRun] = field(default_factory=list)
    # Source files that could not be found (or no longer match their recorded hash), as "target: path".
    missing_sources: list[str] = field(default_factory=list)
    # Parallel to `audits`: `time_budgets` of the target folder's train logs, when the folder is on disk.
    logs: list[dict[str, Any] | None] = field(default_factory=list)


def bundled_examples_root() -> Path:
    import audits

    return Path(audits.__file__).resolve().parent / "examples"


def load_inputs(paths: list[str | Path], source_roots: list[str | Path] = ()) -> Inputs:
    """Read every input; raise `ReportInputError` on the first that cannot be read."""
    out = Inputs()
    for given in paths:
        p = Path(given)
        if p.is_dir():
            rj = p / "results.json"
            if not rj.is_file():
                raise ReportInputError(f"{given}: a folder without results.json (expected a run-reference run "
                                       "directory)")
            out.references.append(_reference(rj, _read_json(rj), str(given)))
            continue
        obj = _read_json(p)
        if isinstance(obj, dict) and str(obj.get("schema", "")).startswith(REFERENCE_SCHEMA_PREFIX):
            out.references.append(_reference(p, obj, str(given)))
        elif isinstance(obj, dict) and "schema_version" in obj and ("target" in obj or "results" in obj):
            roots = [Path(r) for r in source_roots] + [p.resolve().parent, Path.cwd(), bundled_examples_root()]
            for result in _audit_results(obj, given):
                attach_sources(result, roots, out.missing_sources)
                out.audits.append(result)
                folder = find_folder(result, roots)
                out.logs.append(log_budgets(folder) if folder is not None else None)
        else:
            raise ReportInputError(f"{given}: not a scorefirst audit result nor run-reference results "
                                   "(no schema_version/target, no scorefirst.reference.results schema)")
    return out


def _read_json(p: Path) -> Any:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportInputError(f"{p}: no such file") from None
    except UnicodeDecodeError:
        raise ReportInputError(f"{p}: not valid UTF-8") from None
    except OSError as e:
        raise ReportInputError(f"{p}: {e.strerror or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportInputError(f"{p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def _audit_results(obj: dict[str, Any], given: str | Path) -> list[AuditResult]:
    items = obj["results"] if "results" in obj else [obj]
    if not isinstance(items, list):
        raise ReportInputError(f"{given}: 'results' is not a list")
    out = []
    for i, d in enumerate(items):
        try:
            out.append(AuditResult.from_dict(d))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            where = f" (result {i + 1})" if "results" in obj else ""
            detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ReportInputError(f"{given}{where}: not a valid audit result: {detail}") from None
    return out


def _reference(path: Path, obj: Any, given: str) -> ReferenceRun:
    if not isinstance(obj, dict) or not str(obj.get("schema", "")).startswith(REFERENCE_SCHEMA_PREFIX):
        raise ReportInputError(f"{given}: not run-reference results (schema {REFERENCE_SCHEMA_PREFIX}*)")
    if not isinstance(obj.get("seeds"), list):
        raise ReportInputError(f"{given}: run-reference results without a 'seeds' list")
    spec = None
    sp = path.parent / "run_spec.json"
    if sp.is_file():
        try:
            cand = json.loads(sp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cand = None
        if isinstance(cand, dict) and str(cand.get("schema", "")).startswith(RUN_SPEC_SCHEMA_PREFIX):
            spec = cand
    return ReferenceRun(obj, spec, given)


def attach_sources(result: AuditResult, roots: list[Path], missing: list[str]) -> None:
    for fr in result.files:
        if fr.source is not None or fr.error:
            continue
        fr.source = read_verified(fr, roots)
        if fr.source is None:
            missing.append(f"{result.target}: {fr.path}")


def read_verified(fr: FileResult, roots: list[Path]) -> str | None:
    """The file's text from the first root holding a copy with the recorded hash."""
    for root in roots:
        cand = root / fr.path
        try:
            if not cand.is_file():
                continue
            data = cand.read_bytes()
        except OSError:
            continue
        try:
            src = decode_source(data, fr.path)
        except SourceInputError:
            continue
        if fr.sha256 and src.sha256 != fr.sha256:
            continue
        return src.text
    return None


def find_folder(result: AuditResult, roots: list[Path]) -> Path | None:
    for root in roots:
        cand = root / result.target
        try:
            if cand.is_dir():
                return cand
        except OSError:
            continue
    return None


# --- time budgets from a folder's train logs ------------------------------------------------------------------


def log_budgets(folder: Path) -> dict[str, Any] | None:
    """The folder's time budgets, read by the gate's log parser so the report shows the figures the gate judges."""
    try:
        return time_budgets(read_logs(folder))
    except OSError:
        return None


def time_budgets(logs: list[RunLog], train_limit_s: float = TRAIN_LIMIT_S,
                 eval_limit_s: float = EVAL_LIMIT_S) -> dict[str, Any] | None:
    """The slowest seed's training and evaluation seconds, and whether any seed is over a limit.

    The seconds are the gate's: training includes calibration (PG-TIME-TRAIN), evaluation every timed evaluation
    and phase after training (PG-TIME-EVAL). "Over" is the budgets check's own test; None when no log has a time.
    """
    trains = [lg.train_total_s for lg in logs if lg.train_total_s is not None]
    evals = [lg.eval_total_s for lg in logs if lg.eval_total_s is not None]
    if not trains and not evals:
        return None
    return {"train_seconds": max(trains, default=None), "eval_seconds": max(evals, default=None), "logs": len(logs),
            "train_over": any(lg.train_over(train_limit_s) for lg in logs),
            "eval_over": any(lg.eval_over(eval_limit_s) for lg in logs)}


def finite(x: Any) -> float | None:
    """A JSON number as a float, or None for null, NaN, infinities and non-numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None
