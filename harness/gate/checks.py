"""The five checks of a submission folder: legality, format, logs, budgets and significance.

Each check reads a `Folder` (the folder as extracted from git, its parsed submission.json and train logs) and
returns a `Check` whose messages are located (`path:line:col`) and tagged with the rule they enforce (RULES.md §2).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audits.results import AuditResult
from audits.types import Severity, Verdict
from audits.types import Status as FindingStatus
from audits import jsonguard
from core.competition import record_folder
from core.runlogs import RunLog, read_logs
from harness.gate import jsonschema_lite as js
from harness.gate.config import GateConfig, Record
from harness.gate.gitdiff import Change
from harness.gate.model import Check, Status

REQUIRED = ("README.md", "submission.json", "train_gpt.py")
SCRIPT = "train_gpt.py"
LN2 = math.log(2)


def n(x: float | int) -> str:
    """15,976,086 for ints; 1.1197 style for floats."""
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.4f}"


@dataclass
class Folder:
    folder: str  # records/<track>/<name>
    root: Path  # the extracted copy
    change: str  # "added" | "modified"
    entries: list[tuple[str, str]] = field(default_factory=list)  # (git mode, path) at head
    submission: dict[str, Any] | None = None
    sub_error: str | None = None
    located: js.Located | None = None
    script: bytes | None = None
    logs: list[RunLog] = field(default_factory=list)

    @property
    def track(self) -> str:
        return PurePosixPath(self.folder).parts[1]

    def rel(self, name: str) -> str:
        return f"{self.folder}/{name}"

    @property
    def sub_path(self) -> str:
        return self.rel("submission.json")

    def at(self, pointer: str, key: bool = False) -> tuple[int, int]:
        return self.located.at(pointer, key) if self.located else (0, 0)


def load_folder(folder: str, root: Path, change: str, entries: list[tuple[str, str]]) -> Folder:
    f = Folder(folder, root, change, entries)
    sp = root / SCRIPT
    if sp.is_file() and not sp.is_symlink():
        f.script = sp.read_bytes()
    jp = root / "submission.json"
    if jp.is_file() and not jp.is_symlink():
        _read_submission(f, jp.read_bytes())
    if root.is_dir():
        f.logs = read_logs(root, f"{folder}/")
    return f


def _read_submission(f: Folder, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        f.sub_error = f"{line}:0:not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        return
    if text.startswith("\ufeff"):
        f.sub_error = "1:1:starts with a byte-order mark; save it as plain UTF-8"
        return
    problem = jsonguard.precheck(text)
    if problem is not None:
        f.sub_error = f"{problem.line}:{problem.column}:{problem.message}"
        return
    try:
        data = json.loads(text, parse_constant=_reject_constant)
        f.located = js.locate(text)
    except json.JSONDecodeError as e:
        f.sub_error = f"{e.lineno}:{e.colno}:invalid JSON: {e.msg}"
        return
    except RecursionError:
        f.sub_error = "1:1:nested too deeply to read"
        return
    except ValueError as e:  # a constant the precheck missed (it never should), or a number Python refuses
        f.sub_error = f"1:1:{e}"
        return
    if not isinstance(data, dict):
        f.sub_error = f"1:1:expected a JSON object, got {js._a(js._type_name(data))}"
        return
    f.submission = data


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (a score must be finite)")


# --- legality -----------------------------------------------------------------------------------------------

_SUBMISSION_DEFECTS = {"syntax", "binary", "encoding", "too-large", "symlink"}


def _dynamic_messages(c: Check, audit: AuditResult) -> None:
    """Fold the dynamic audit into legality: a failed or doubtful check is a message on the script; a condition on
    which static and dynamic verdicts disagree is surfaced for a person, never resolved silently."""
    dyn = audit.dynamic
    script = dyn.script or audit.target
    level = {Verdict.FAIL: "error", Verdict.WARN: "warning"}
    for item, name in [(k, k.id) for k in dyn.checks] + [(p, p.name) for p in dyn.probes]:
        lv = level.get(item.verdict)
        if lv:
            c.add("PG-DYNAMIC", lv, f"dynamic audit {item.condition} {name}: {item.message}", script,
                  key=f"dynamic:{name}")
    for row in dyn.agreement:
        if row.agree is False:
            c.add("PG-DYNAMIC", "warning", f"static and dynamic audits disagree on {row.condition}: static "
                  f"{row.static}, dynamic {row.dynamic} — a person should look", script,
                  key=f"disagree:{row.condition}")
    c.data["dynamic"] = dyn.overall().value


def legality_check(f: Folder, audit: AuditResult | None) -> Check:
    c = Check("legality")
    if audit is None:
        c.status = Status.SKIP
        return c.settle("not audited")
    for fr in audit.files:
        if not fr.error:
            continue
        kind = fr.error_kind or ""
        if kind in ("submission-json", "no-python-files"):
            continue  # the format check reports these
        if kind == "empty":
            c.add("PG-AUDIT", "note", fr.error, fr.path, key="empty")
        elif kind in _SUBMISSION_DEFECTS or (kind == "too-complex" and "Python itself" in fr.error):
            c.add("PG-AUDIT", "error", f"{fr.error} (the script cannot be audited as submitted)", fr.path,
                  *_line_of(fr.error), key=f"defect:{kind}")
        else:
            c.add("PG-AUDIT", "error", f"could not audit: {fr.error}", fr.path, key=f"error:{kind}")
            c.status = Status.ERROR
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
    for finding in audit.findings:
        if finding.status is not FindingStatus.ACTIVE:
            continue
        conds = ", ".join(x.value for x in finding.conditions)
        line = finding.origin.outer_line if finding.origin is not None else finding.line
        col = 0 if finding.origin is not None else finding.column
        c.add(finding.rule_id, level[finding.severity], f"{finding.message} [{conds}]", finding.path, line, col,
              key=finding.fingerprint)
    bad = [f"{k.value} {v.value}" for k, v in audit.conditions.items() if v.value != "PASS"]
    files = len([fr for fr in audit.files if not fr.error])
    if not files and not c.messages:
        c.status = Status.SKIP
        return c.settle("no Python file to audit (the format check reports a missing train_gpt.py)")
    summary = f"static audit of {files} Python file{'s' if files != 1 else ''}: overall {audit.overall.value}"
    if bad:
        summary += f" ({', '.join(bad)})"
    env = [f"{e.key}={e.value}" for e in audit.env]
    if env:
        summary += f"; run environment {' '.join(env[:6])}{' …' if len(env) > 6 else ''}"
    c.data = {"overall": audit.overall.value, "conditions": {k.value: v.value for k, v in audit.conditions.items()},
              "incomplete": audit.incomplete}
    if audit.dynamic is not None:
        _dynamic_messages(c, audit)
    return c.settle(summary)


def _line_of(text: str) -> tuple[int, int]:
    """`path:12:5: ...` -> (12, 5); (0, 0) when the message carries no position."""
    m = re.match(r"^.*?:(\d+)(?::(\d+))?: ", text)
    if not m:
        return 0, 0
    return int(m.group(1)), int(m.group(2) or 0)


# --- format -----------------------------------------------------------------------------------------------


def format_check(f: Folder, cfg: GateConfig, all_changes: list[Change], folders: list[str]) -> Check:
    c = Check("format")
    if f.track not in cfg.tracks:
        c.add("PG-FMT", "error", f"unknown track {f.track!r}: submissions go under records/"
              f"{' or records/'.join(cfg.tracks)}", f.folder, key="track")
    # The record track holds folders to the README's layout (valerio-oai on #529/#639/#656: no submission.json or
    # logs); the non-record track accepted scripts and metadata under other names and results outside a train log.
    level = "error" if f.track in cfg.timed_tracks else "warning"
    lenient = "" if level == "error" else (f" (on {f.track}, merged submissions were accepted with the script or "
                                           "metadata under other names or results outside a train log; a person "
                                           "looks)")
    in_git = {path for _, path in f.entries}
    for name in REQUIRED:
        p = f.root / name
        if f.rel(name) not in in_git and not p.exists() and not p.is_symlink():
            others = _similar_files(f.root, name)
            instead = f"; the folder has {', '.join(others[:3])}" if others else ""
            c.add("PG-FMT", level, f"missing {name}: a record folder holds README.md, submission.json, "
                  f"train_gpt.py and its train logs{instead}{lenient}", f.rel(name), key=f"missing:{name}")
    if not f.logs:
        c.add("PG-FMT", level, "no train log: add one log per seed (e.g. train_seed1337.log) in the official grammar"
              f"{lenient}", f.folder, key="missing:log")
    for mode, path in f.entries:
        if mode == "120000":
            c.add("PG-FMT", "error", "symbolic link: a submission folder holds regular files only", path, key="symlink")
        elif mode == "160000":
            c.add("PG-FMT", "error", "git submodule: a submission folder holds regular files only", path,
                  key="submodule")
    if f.change == "modified":
        c.add("PG-FMT", "warning", "modifies a folder that already exists on the base branch; a record PR adds a new "
              "folder (fixes to an existing record need a maintainer; PG-CHRONO grace policy)", f.folder,
              key="modified")
    _outside(c, f, all_changes, folders)
    _submission_format(c, f, cfg)
    n_errors = sum(1 for m in c.messages if m.level == "error")
    summary = "required files present, submission.json valid, only this folder changed" if not n_errors else \
        f"{n_errors} problem{'s' if n_errors != 1 else ''}"
    return c.settle(summary)


def _similar_files(root: Path, name: str) -> list[str]:
    """Files that may stand in for a missing required one (`train_mdlm.py` for train_gpt.py, …)."""
    if not root.is_dir():
        return []
    suffix = PurePosixPath(name).suffix
    stem = PurePosixPath(name).stem.split("_")[0].lower()
    return sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix == suffix
                  and p.name.lower().startswith(stem))


# Outside the folder, a change to another submission or the workflows, or an edit, deletion or rename of an existing
# file (the README's rules and leaderboard, the shared scripts), blocks; new files elsewhere (a paper, a rerun
# script) and git's own ignore/attribute lists are what merged PRs carried, for a person to look at.
_OUTSIDE_ALWAYS = re.compile(r"^(records|\.github)/")
_GIT_METADATA = re.compile(r"(^|/)\.git(ignore|attributes)$")


def _outside_blocks(ch: Change) -> bool:
    paths = [p for p in (ch.path, ch.old_path) if p]
    if any(_OUTSIDE_ALWAYS.match(p) for p in paths):
        return True
    return ch.status != "A" and not all(_GIT_METADATA.search(p) for p in paths)


def _outside(c: Check, f: Folder, all_changes: list[Change], folders: list[str]) -> None:
    verbs = {"A": "adds", "M": "modifies", "D": "deletes", "R": "renames", "C": "copies", "T": "changes the type of"}
    others: dict[str, int] = {}
    for ch in all_changes:
        if record_folder(ch.path) == f.folder and ch.old_path and record_folder(ch.old_path) != f.folder:
            if ch.status == "R":  # moved in from elsewhere: the file disappears from where it was
                c.add("PG-FMT", "error", f"the change moves this file into {f.folder}/ (renamed to {ch.path}): a "
                      "record PR changes nothing outside its own folder", ch.old_path, key=f"outside:{ch.old_path}")
            continue
        if record_folder(ch.path) == f.folder:
            continue
        other = record_folder(ch.path)
        if other in folders:
            others[other] = others.get(other, 0) + 1
            continue
        verb = verbs.get(ch.status, "changes")
        src = f" (from {ch.old_path})" if ch.old_path else ""
        blocks = _outside_blocks(ch)
        why = "another submission, a workflow, or an existing file" if blocks else \
            "a new file or git metadata, as merged PRs carried; a person looks"
        c.add("PG-FMT", "error" if blocks else "warning", f"the change {verb} this file{src}, outside the submission "
              f"folder ({why}): a record PR changes nothing but its own folder under records/<track>/", ch.path,
              key=f"outside:{ch.path}")
    if others:
        names = sorted(others)
        listed = ", ".join(f"{o}/ ({others[o]} file{'s' if others[o] != 1 else ''})" for o in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        c.add("PG-FMT", "warning", f"the same change also adds or modifies {len(names)} other submission "
              f"folder{'s' if len(names) != 1 else ''}: {listed}{more}; a record PR adds exactly one folder (each "
              "folder is gated on its own; merged PRs brought several, so a person looks)", f.folder,
              key="other-folders")


def _submission_format(c: Check, f: Folder, cfg: GateConfig) -> None:
    path = f.sub_path
    if f.sub_error:
        line, col, text = f.sub_error.split(":", 2)
        c.add("PG-FMT", "error", f"submission.json: {text}", path, int(line), int(col), key="json")
        return
    if f.submission is None:
        return
    assert f.located is not None
    for ptr, off in f.located.duplicates:
        line, col = f.located.line_col(off)
        name = ptr.rsplit("/", 1)[1]
        c.add("PG-FMT", "error", f"submission.json: duplicate key {name!r} (JSON readers keep only the last one)",
              path, line, col, key=f"dup:{ptr}")
    try:
        errors = js.validate(f.submission, js.load_schema())
    except RecursionError:
        errors = [js.SchemaError("", "nested too deeply to validate", "depth")]
    day = submission_day(f)
    launch_era = day is not None and day.isoformat() < cfg.strict_schema_since[:10]
    era = (f" (launch-era template: dated {day}, before {cfg.strict_schema_since[:10]}; merged records of that era "
           "were accepted without the current template, so a person looks)") if launch_era else ""
    missing = [e for e in errors if launch_era and e.keyword == "required" and not e.pointer]
    if missing:
        names = ", ".join(re.sub(r"^missing required field ", "", e.message) for e in missing)
        c.add("PG-FMT", "warning", f"submission.json lacks the current template's {names}{era}", path, 1, 1,
              key="schema:required:")
    for err in errors:
        if err in missing:
            continue
        line, col = f.at(err.pointer, key=err.at_key)
        where = err.pointer or "(top level)"
        c.add("PG-FMT", "warning" if launch_era else "error", f"submission.json {where}: {err.message}{era}", path,
              line, col, key=f"schema:{err.keyword}:{err.pointer}")
    sub = f.submission
    date = sub.get("date")
    if isinstance(date, str) and len(date) >= 10:
        try:
            day = dt.date.fromisoformat(date[:10])
        except ValueError:
            line, col = f.at("/date")
            c.add("PG-FMT", "error", f"submission.json /date: {date!r} is not a calendar date", path, line, col,
                  key="date")
        else:
            try:
                cutoff = dt.date.fromisoformat(cfg.cutoff[:10])
            except ValueError:
                cutoff = None
            if cutoff and day >= cutoff and f.track in cfg.timed_tracks:
                line, col = f.at("/date")
                c.add("PG-CHRONO", "warning", f"dated {date[:10]}, on or after the leaderboard cutoff {cfg.cutoff}: "
                      "only compliance fixes to earlier PRs count (grace policy, #2146)", path, line, col, key="cutoff")
    track = sub.get("track")
    if isinstance(track, str):
        norm = track if track.startswith("track_") else f"track_{track}"
        if norm != f.track:
            line, col = f.at("/track")
            c.add("PG-FMT", "warning" if launch_era else "error", f"submission.json /track: says {track!r} but the "
                  f"folder is under records/{f.track}/{era}", path, line, col, key="track-mismatch")
    for name, why in (("seeds", "the gate took the seeds from the logs"),
                      ("track", "the gate took it from the folder")):
        if name not in sub:
            c.add("PG-FMT", "note", f"submission.json has no {name!r} field (recommended; {why})", path, 1, 1,
                  key=f"recommend:{name}")


def submission_day(f: Folder) -> dt.date | None:
    """The submission's date: submission.json `date`, else the folder name's `YYYY-MM-DD_` prefix."""
    for text in ((f.submission or {}).get("date"), PurePosixPath(f.folder).name):
        if isinstance(text, str):
            m = re.match(r"(\d{4}-\d{2}-\d{2})", text)
            if m:
                try:
                    return dt.date.fromisoformat(m.group(1))
                except ValueError:
                    pass
    return None


# --- logs -------------------------------------------------------------------------------------------------


def _seed_label(log: RunLog) -> str:
    return f"seed {log.run_seed}" if log.run_seed is not None else PurePosixPath(log.path).name


def logs_check(f: Folder, cfg: GateConfig) -> Check:
    c = Check("logs")
    if not f.logs:
        c.status = Status.SKIP
        return c.settle("no train logs")
    script_sha = hashlib.sha256(f.script).hexdigest() if f.script is not None else None
    script_md5 = hashlib.md5(f.script).hexdigest() if f.script is not None else None  # an identity echo, not security
    for log in f.logs:
        _log_identity(c, f, log, script_sha, script_md5, cfg.log_mismatch)
        _log_stages(c, log, cfg, f.track in cfg.timed_tracks)
        if log.seed is not None and log.seed_from_name is not None and log.seed != log.seed_from_name:
            c.add("PG-LOG", cfg.log_mismatch, f"the file name says seed {log.seed_from_name} but the log says "
                  f"seed:{log.seed} (the gate takes the log's; a person checks which run this is)", log.path,
                  log.seed_line, key="seed-name")
        if log.run_seed is None:
            c.add("PG-LOG", "warning", "no seed in the log (no `seed:N` line) nor in its file name", log.path,
                  key="no-seed")
        for name, value, line in log.gate_counters:
            if value:
                c.add("PG-NG-004", "error", f"{name}={value:,}: a hint gated on the realized target token was active "
                      "(C1; a token-only path logs 0)", log.path, line, key=f"gate:{name}")
        if log.total_bytes is not None and log.model_bytes is not None and log.code_bytes is not None \
                and log.total_bytes != log.model_bytes + log.code_bytes \
                and log.total_bytes != log.model_bytes + (log.code_compressed_bytes or 0):
            c.add("PG-LOG", "error", f"Total submission size {log.total_bytes:,} is not model {log.model_bytes:,} + "
                  f"code {log.code_bytes:,} = {log.model_bytes + log.code_bytes:,}", log.path, log.total_line,
                  key="total-sum")
    seen: dict[int, RunLog] = {}
    for log in f.logs:
        s = log.run_seed
        if s is None:
            continue
        if s in seen:
            first = seen[s]
            a, b = first.final, log.final
            if a is not None and b is not None and (a.val_bpb, a.val_loss) == (b.val_bpb, b.val_loss):
                how = f"the same reported score ({a.val_bpb:.5f}): a copy, counted once"
            else:
                scores = " vs ".join(f"{x.val_bpb:.5f}" if x is not None else "none" for x in (a, b))
                how = f"reported scores {scores}: two runs of one seed, which counts once toward the seeds"
            c.add("PG-LOG", "warning", f"seed {s} has two logs ({first.path} and this one), {how}", log.path,
                  log.seed_line, key=f"dup-seed:{s}")
        else:
            seen[s] = log
    _agreement(c, f, cfg)
    c.data = {"logs": [log.to_dict() for log in f.logs]}
    finals = [log for log in f.logs if log.final is not None]
    summary = f"{len(f.logs)} log{'s' if len(f.logs) != 1 else ''}, {len(finals)} with a reported score"
    if finals:
        mean = statistics.fmean(lg.final.val_bpb for lg in finals)  # type: ignore[union-attr]
        summary += f"; mean val_bpb {mean:.5f}"
    return c.settle(summary)


_MISMATCH_WHY = {"warning": "a person should compare them; the maintainers asked for matching logs only where the "
                            "score was in doubt (#86); `[tolerance] log_mismatch = \"error\"` blocks",
                 "error": "a log of another version of the script (stale log, #86)"}


def _log_identity(c: Check, f: Folder, log: RunLog, script_sha: str | None, script_md5: str | None,
                  level: str = "error") -> None:
    """Tie the log to the submitted script. A mismatch says what differs; its level is `[tolerance] log_mismatch`."""
    if f.script is None:
        return
    size = len(f.script)
    why = _MISMATCH_WHY[level]
    evidence = False
    script_text = f.script.decode("utf-8", "replace").replace("\r\n", "\n")
    stripped = source_without_comments(log.embedded_code) if log.embedded_code is not None else None
    code_only_in_comments = stripped is not None and stripped == source_without_comments(script_text)
    if log.derived_code_bytes is not None:
        evidence = True
        logged = log.derived_code_bytes
        if logged != size:
            how = "`Code size:`" if log.code_bytes is not None else "Total submission size minus Serialized model"
            detail = "; the logged source differs only in comments and blank lines" if code_only_in_comments else ""
            c.add("PG-LOG", level, f"the log's code size ({how}) is {logged:,} bytes but the submitted train_gpt.py "
                  f"is {size:,} bytes ({size - logged:+,}){detail}: {why}", log.path,
                  log.code_line if log.code_bytes is not None else log.total_line, key="code-size")
    if log.embedded_code is not None:
        evidence = True
        if log.embedded_code.rstrip("\n") != script_text.rstrip("\n"):
            a = log.embedded_code.split("\n")
            b = script_text.split("\n")
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            was = _snippet(a[first] if first < len(a) else "(end of the logged source)")
            now = _snippet(b[first] if first < len(b) else "(end of the file)")
            scope = "only in comments and blank lines" if code_only_in_comments else "in code"
            c.add("PG-LOG", "warning" if code_only_in_comments else level,
                  f"the source logged at the top differs from the submitted train_gpt.py {scope}: first at line "
                  f"{first + 1}, logged {was} vs submitted {now} ({len(a):,} vs {len(b):,} lines): {why}",
                  log.path, first + 1, key="embedded-code")
    for algo, value, line in log.hashes:
        evidence = True
        want = script_md5 if "md5" in algo else script_sha
        if value != want:
            c.add("PG-LOG", "error", f"{algo} {value[:12]}… does not match the submitted train_gpt.py "
                  f"({(want or '?')[:12]}…)", log.path, line, key=f"hash:{algo}")
    if not evidence:
        c.add("PG-LOG", "warning", "the log does not echo the script (no `Code size:` line, no logged source, no code "
              "hash), so it cannot be tied to the submitted train_gpt.py", log.path, key="no-identity")


def _snippet(text: str, width: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= width else text[:width] + "…")


def source_without_comments(text: str) -> str | None:
    """Python source with comments and blank lines removed (tokenized, never run); None when it does not tokenize."""
    import io
    import tokenize

    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
                continue
            out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return " ".join(out)


def _log_stages(c: Check, log: RunLog, cfg: GateConfig, timed: bool = True) -> None:
    final = log.final
    if final is None:
        # a record's score must be readable; the non-record track keeps exploratory logs next to the scored run
        c.add("PG-LOG", "error" if timed else "warning", "no evaluation line (`<label> val_loss:… val_bpb:…`) "
              "after training: the reported score cannot be read", log.path, key="no-final")
        return
    if "ILLEGAL" in final.label or "ILLEGAL" in final.extra:
        c.add("PG-LOG", "error", f"the reported stage {final.label!r} is marked ILLEGAL (a negative control run)",
              log.path, final.line, key="illegal-stage")
    if log.val_tokens is None:
        c.add("PG-BPB-001", "note", "no validation token count in the log (`val_tokens:N` or `tokens:N`): the byte "
              "denominator cannot be recomputed", log.path, key="no-tokens")
        return
    canon, tol = cfg.canonical_val_bytes, cfg.val_bytes_rel_tol
    bad = []
    for st in log.stages:
        implied = st.val_loss * log.val_tokens / (LN2 * st.val_bpb)
        dev = implied / canon - 1.0
        if abs(dev) > tol + st.rel_precision:
            bad.append((st, implied, dev))
    final_bad = [b for b in bad if b[0] is final]
    if final_bad:
        st, implied, dev = final_bad[0]
        c.add("PG-BPB-001", "error", f"{st.label}: val_loss·tokens/(ln2·val_bpb) = {implied:,.0f} validation bytes, "
              f"{dev:+.2%} from the canonical {canon:,.0f} (±{tol:.1%}): the BPB denominator is not the validation "
              "split's bytes (LUT or byte-accounting error, or a partial split)", log.path, st.exact_line or st.line,
              key="denominator")
    others = [b for b in bad if b[0] is not final]
    if others:
        labels = ", ".join(f"{st.label} ({dev:+.2%})" for st, _, dev in others[:4])
        c.add("PG-BPB-001", "warning", f"other stages imply a different byte denominator: {labels}", log.path,
              others[0][0].line, key="denominator-other")


def _agreement(c: Check, f: Folder, cfg: GateConfig) -> None:
    sub = f.submission
    if sub is None:
        return
    path = f.sub_path
    finals = [lg for lg in f.logs if lg.final is not None]
    seeds_field = sub.get("seeds")
    if isinstance(seeds_field, list):
        logged = {lg.run_seed for lg in f.logs if lg.run_seed is not None}
        found = ", ".join(str(s) for s in sorted(logged)) or "none"
        for i, s in enumerate(seeds_field):
            if isinstance(s, int) and not isinstance(s, bool) and s not in logged:
                line, col = f.at(f"/seeds/{i}")
                c.add("PG-LOG", cfg.log_mismatch, f"seed {s} is listed in submission.json but no train log reports it "
                      f"(logs found for seeds: {found}; the significance check counts only logged runs)", path, line,
                      col, key=f"missing-seed:{s}")
        listed = {s for s in seeds_field if isinstance(s, int)}
        for lg in f.logs:
            if lg.run_seed is not None and lg.run_seed not in listed:
                c.add("PG-LOG", "warning", f"seed {lg.run_seed} has a log but is not listed in submission.json seeds",
                      lg.path, lg.seed_line, key=f"unlisted-seed:{lg.run_seed}")
    if finals:
        runs = distinct_runs(finals)
        timed = f.track in cfg.timed_tracks
        for field_name, attr, tol in (("val_bpb", "val_bpb", cfg.bpb_tolerance),
                                      ("val_loss", "val_loss", cfg.loss_tolerance)):
            claimed = sub.get(field_name)
            if not _is_num(claimed):
                continue
            mean = statistics.fmean(getattr(lg.final, attr) for lg in runs)
            if abs(claimed - mean) <= tol:
                continue
            per = ", ".join(f"{_seed_label(lg)}: {getattr(lg.final, attr):.5f}" for lg in runs[:6])
            line, col = f.at(f"/{field_name}")
            text = f"submission.json {field_name} {claimed} but the logs' reported stages average {mean:.5f} ({per})"
            level, why = _claim_support(claimed, attr, tol, mean, f.logs, timed)
            c.add("PG-LOG", level, f"{text}: {why}", path, line, col, key=f"agree:{field_name}")
    code = sub.get("bytes_code")
    if f.script is not None and isinstance(code, int) and not isinstance(code, bool) and code != len(f.script):
        line, col = f.at("/bytes_code")
        c.add("PG-LOG", cfg.log_mismatch, f"submission.json bytes_code {code:,} but train_gpt.py is "
              f"{len(f.script):,} bytes ({len(f.script) - code:+,}); the budgets check counts the logged and submitted "
              "sizes", path, line, col, key="bytes_code")
    total = sub.get("bytes_total")
    totals = [t for t in (artifact_bytes(f, lg, cfg.code_counting) for lg in f.logs) if t is not None]
    if isinstance(total, int) and not isinstance(total, bool) and totals and total not in totals:
        line, col = f.at("/bytes_total")
        lo, hi = min(totals), max(totals)
        if lo <= total <= hi:
            c.add("PG-LOG", "warning", f"submission.json bytes_total {total:,} is none of the seeds' artifacts "
                  f"({', '.join(f'{t:,}' for t in totals)}); report the largest, {hi:,}", path, line, col,
                  key="bytes_total")
        else:
            c.add("PG-LOG", cfg.log_mismatch, f"submission.json bytes_total {total:,} does not match the logged "
                  f"artifacts ({', '.join(f'{t:,}' for t in totals)}; code + compressed model per seed); the budgets "
                  "check judges the logged ones", path, line, col, key="bytes_total")


def distinct_runs(logs: list[RunLog]) -> list[RunLog]:
    """One log per run: a second log of the same seed with the same reported score is a copy (train.log kept
    next to train_seed1337.log), not another run."""
    seen, out = set(), []
    for lg in logs:
        ident = (lg.run_seed, lg.final.val_bpb, lg.final.val_loss) if lg.final and lg.run_seed is not None else None
        if ident is not None and ident in seen:
            continue
        if ident is not None:
            seen.add(ident)
        out.append(lg)
    return out


def _claim_support(claimed: float, attr: str, tol: float, mean: float, logs: list[RunLog],
                   timed: bool) -> tuple[str, str]:
    """How bad a submission.json score that is not the seeds' mean is: a score some log reports (one seed's, as
    launch-era records stated), or one worse than the mean, is for a person to look at; a better score than any
    logged stage is unsupported and blocks on the record track."""
    for lg in logs:
        for st in lg.eval_stages:
            if abs(getattr(st, attr) - claimed) <= tol:
                return "warning", (f"it is {_seed_label(lg)}'s `{st.label}` stage ({lg.path.rsplit('/', 1)[-1]}:"
                                   f"{st.exact_line or st.line}), not the mean of the seeds' reported stages; a "
                                   "person looks")
    by_label: dict[str, list[float]] = {}
    for lg in distinct_runs([lg for lg in logs if lg.final is not None]):
        for st in lg.eval_stages:
            by_label.setdefault(st.label, []).append(getattr(st, attr))
    for label, values in by_label.items():
        if len(values) > 1 and abs(statistics.fmean(values) - claimed) <= tol:
            return "warning", (f"it is the mean of the `{label}` stages ({len(values)} runs), an earlier stage than "
                               "the last one each log reports; a person checks which stage the record is")
    if attr == "val_loss" and any(abs(st.val_bpb - claimed) <= tol for lg in logs for st in lg.eval_stages):
        return "warning", "it is a logged val_bpb, not a val_loss (the fields are swapped); a person looks"
    if claimed >= mean:
        return "warning", "the stated score is worse than the logs show (conservative); a person looks"
    if not timed:
        return "warning", "no logged stage reports it (non-record track: not ranked); a person looks"
    return "error", "no logged stage reports a score this good: the stated score is not supported by the logs"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def artifact_bytes(f: Folder, log: RunLog, counting: str = "logged") -> int | None:
    """Code + the compressed model. The code as the run's own accounting counted it ("logged", compressed where
    the script compressed it), or the submitted train_gpt.py's bytes ("submitted", "folder")."""
    if log.model_bytes is None:
        return None
    submitted = len(f.script) if f.script is not None else log.derived_code_bytes
    code = log.counted_code_bytes if counting == "logged" else None
    if code is None:
        code = submitted
    return None if code is None else code + log.model_bytes


def seed_rows(f: Folder, counting: str = "logged", counting_artifact: bool = False) -> list[dict[str, Any]]:
    rows = []
    for lg in f.logs:
        final = lg.final
        rows.append({
            "seed": lg.run_seed, "log": lg.path, "steps": lg.steps, "step_avg_ms": lg.step_avg_ms,
            "train_loop_s": lg.train_ms / 1000 if lg.train_ms is not None else None,
            "calibration_s": lg.calibration_s, "train_s": lg.train_seconds(counting_artifact),
            "eval_s": lg.eval_total_s,
            "stage": final.label if final else None, "val_loss": final.val_loss if final else None,
            "val_bpb": final.val_bpb if final else None, "model_bytes": lg.model_bytes,
            "code_bytes": _code_counted(f, lg, counting),
            "artifact_bytes": artifact_bytes(f, lg, counting),
            "stages": [{"label": s.label, "val_loss": s.val_loss, "val_bpb": s.val_bpb} for s in lg.eval_stages],
        })
    return rows


def _code_counted(f: Folder, lg: RunLog, counting: str) -> int | None:
    total = artifact_bytes(f, lg, counting)
    return None if total is None or lg.model_bytes is None else total - lg.model_bytes


# --- budgets ----------------------------------------------------------------------------------------------


def _size_messages(c: Check, f: Folder, cfg: GateConfig, timed: bool) -> tuple[list[int], int]:
    """PG-SIZE-001: each seed's artifact against the limit, code outside train_gpt.py, the size claimed in
    submission.json. Returns the sizes and the bytes of the other Python files."""
    limit = cfg.artifact_limit
    sizes = []
    extra = [p for p in sorted(f.root.rglob("*.py")) if p.name != SCRIPT or p.parent != f.root] \
        if f.root.is_dir() else []
    extra_bytes = sum(p.stat().st_size for p in extra if p.is_file() and not p.is_symlink())
    counting = cfg.code_counting
    over_with_extra = []
    compressed_note = None
    for lg in f.logs:
        who = _seed_label(lg)
        total = artifact_bytes(f, lg, counting)
        if total is None:
            c.add("PG-SIZE-001", "error" if timed else "warning", f"{who}: no `Serialized model … bytes` line (or no "
                  "code size): the artifact size cannot be checked" + ("" if timed else " (non-record track: a "
                  "person checks the size the README states)"), lg.path, key="no-size")
            continue
        code = total - (lg.model_bytes or 0)
        if counting == "folder":
            total += extra_bytes
        sizes.append(total)
        if total > limit:
            plus = f" + other Python files {extra_bytes:,}" if counting == "folder" and extra_bytes else ""
            c.add("PG-SIZE-001", "error", f"{who}: artifact {total:,} bytes (code {code:,} + compressed model "
                  f"{lg.model_bytes:,}{plus}) exceeds {limit:,} by {total - limit:,} (decimal bytes, not MiB)",
                  lg.path, lg.model_line, key="size")
        elif extra_bytes and counting != "folder" and total + extra_bytes > limit:
            over_with_extra.append(f"{who} {total + extra_bytes:,}")
        if counting == "logged" and f.script is not None and code < len(f.script) and compressed_note is None:
            compressed_note = (lg, code)
    if compressed_note is not None:
        lg, code = compressed_note
        how = "Total submission size minus Serialized model" if lg.total_bytes is not None else \
            "Code size (compressed)"
        c.add("PG-SIZE-001", "note", f"code counted as the run's own accounting counts it ({code:,} bytes, {how}) "
              f"while train_gpt.py as submitted is {len(f.script):,} bytes: the maintainers accepted merged records "
              "counted so; `[limits] code_bytes = \"submitted\"` counts the file as submitted", lg.path,
              lg.total_line or lg.code_compressed_line, key="code-counted")
    if extra:
        names = ", ".join(f"{p.relative_to(f.root).as_posix()}" for p in extra[:5])
        over = (f"; counted too, the artifact would be over {limit:,} ({', '.join(over_with_extra[:3])} bytes; "
                "merged records shipped helper files uncounted; `[limits] code_bytes = \"folder\"` counts them)"
                if over_with_extra else "")
        c.add("PG-SIZE-001", "warning", f"code outside train_gpt.py ({names}; {extra_bytes:,} bytes): all counted code "
              f"should live in train_gpt.py{over}", f.rel(extra[0].relative_to(f.root).as_posix()),
              key="extra-code")
    if f.submission is not None:
        bt = f.submission.get("bytes_total")
        if isinstance(bt, int) and not isinstance(bt, bool) and bt > limit:
            line, col = f.at("/bytes_total")
            c.add("PG-SIZE-001", "error", f"submission.json bytes_total {bt:,} exceeds {limit:,}", f.sub_path, line,
                  col, key="size-claimed")
    return sizes, extra_bytes


def _time_messages(c: Check, f: Folder, cfg: GateConfig, timed: bool) -> tuple[list[float], list[float]]:
    """PG-TIME-TRAIN and PG-TIME-EVAL for each seed's log (on a timed track). Returns the seconds measured."""
    trains, evals = [], []
    count_artifact = cfg.train_scope == "artifact"
    for lg in f.logs:
        who = _seed_label(lg)
        tr, ev = lg.train_seconds(count_artifact), lg.eval_total_s
        if tr is not None:
            trains.append(tr)
        if ev is not None:
            evals.append(ev)
        if not timed:
            continue
        if tr is None:
            c.add("PG-TIME-TRAIN", "error", f"{who}: no training time in the log (`train_time:…ms`)", lg.path,
                  key="no-train-time")
        elif lg.train_over(cfg.train_limit_s, cfg.train_overrun_s, count_artifact):
            stated = lg.phase("artifact_total") if count_artifact or lg.train_ms is None else None
            if stated is not None:
                how, line = f"stated {stated.name}", stated.line
            elif lg.calibration_s:
                calib = [p for p in lg.phases if p.kind == "calibration"]
                loop_s = (lg.train_ms or 0.0) / 1000
                how = f"loop {loop_s:.1f} s + calibration {lg.calibration_s:.1f} s"
                line = calib[-1].line
            else:
                how, line = f"loop {tr:.1f} s", lg.train_line
            hint = ("; GPTQ/Hessian calibration and artifact production count toward training: reserve time for "
                    "them (e.g. GPTQ_RESERVE_SECONDS)") if lg.calibration_s else ""
            c.add("PG-TIME-TRAIN", "error", f"{who}: training {tr:.1f} s ({how}) exceeds {cfg.train_limit_s:.0f} s"
                  f"{hint}", lg.path, line, key="train-time")
        elif lg.train_over(cfg.train_limit_s, 0.0, count_artifact):  # within the overrun tolerance
            c.add("PG-TIME-TRAIN", "note", f"{who}: training {tr:.3f} s, {tr - cfg.train_limit_s:.3f} s past "
                  f"{cfg.train_limit_s:.0f} s: within one step ({lg.step_ms:.0f} ms) plus {cfg.train_overrun_s:g} s, "
                  "as the wallclock cap stops the loop after a step (merged records stop up to 0.2 s past); "
                  "`[tolerance] train_overrun_seconds = 0` makes it strict", lg.path, lg.train_line,
                  key="train-overrun")
        stated = lg.phase("artifact_total")
        if not count_artifact and stated is not None and lg.train_ms is not None and stated.seconds > cfg.train_limit_s:
            c.add("PG-TIME-TRAIN", "note", f"{who}: the log states {stated.name} {stated.seconds:.1f} s "
                  f"over {cfg.train_limit_s:.0f} s; the loop and calibration (training-data access) took {tr:.1f} s, "
                  "which is what the maintainers held to the budget (#1868); `[limits] train_scope = \"artifact\"` "
                  "counts the stated total", lg.path, stated.line, key="artifact-production")
        if ev is None:
            c.add("PG-TIME-EVAL", "error", f"{who}: no evaluation time in the log (`eval_time:…ms` on the evaluation "
                  "lines)", lg.path, key="no-eval-time")
        elif lg.eval_over(cfg.eval_limit_s):
            parts = [f"{s.label} {s.eval_ms / 1000:.1f} s" for s in lg.eval_stages if s.eval_ms is not None]
            parts += [f"{p.name} {p.seconds:.1f} s" for p in lg.phases if p.kind == "eval"]
            final = lg.final
            c.add("PG-TIME-EVAL", "error", f"{who}: evaluation {ev:.1f} s ({' + '.join(parts[:5])}) exceeds "
                  f"{cfg.eval_limit_s:.0f} s; TTT and any precompute count toward evaluation", lg.path,
                  final.line if final else 0, key="eval-time")
    return trains, evals


def budgets_check(f: Folder, cfg: GateConfig) -> Check:
    c = Check("budgets")
    limit = cfg.artifact_limit
    timed = f.track in cfg.timed_tracks
    sizes, extra_bytes = _size_messages(c, f, cfg, timed)
    trains, evals = _time_messages(c, f, cfg, timed)
    bits = []
    if sizes:
        bits.append(f"artifact ≤ {max(sizes):,} B of {limit:,}")
    if timed:
        if trains:
            bits.append(f"train ≤ {max(trains):.1f} s")
        if evals:
            bits.append(f"eval ≤ {max(evals):.1f} s")
    else:
        bits.append(f"no time cap on {f.track}")
    c.data = {"timed": timed, "artifact_bytes": sizes, "train_s": trains, "eval_s": evals,
              "extra_code_bytes": extra_bytes}
    return c.settle("; ".join(bits) or "nothing to measure")


# --- significance -----------------------------------------------------------------------------------------


def stated_record(f: Folder) -> Record | None:
    """The record a submission says it beats (`compared_to` in submission.json)."""
    sub = f.submission or {}
    ct = sub.get("compared_to")
    if not isinstance(ct, dict) or "val_bpb" not in ct:
        return None
    def nums(v):
        items = v if isinstance(v, list) else [v]
        return [float(x) for x in items if _is_num(x) and x > 0]
    bpb = nums(ct.get("val_bpb"))
    loss = nums(ct.get("val_loss")) if "val_loss" in ct else None
    if not bpb:
        return None
    name = ct.get("name") if isinstance(ct.get("name"), str) else "stated record"
    if isinstance(ct.get("pr"), int):
        name += f" (PR #{ct['pr']})"
    return Record(name=name, val_bpb=bpb, val_loss=loss if loss and len(loss) == len(bpb) else None,
                  source="submission.json compared_to")


def significance_check(f: Folder, cfg: GateConfig, record: Record | None) -> Check:
    from reference_model import stats  # torch-free: math and statistics only

    c = Check("significance")
    timed = f.track in cfg.timed_tracks
    runs = [lg for lg in f.logs if lg.final is not None]
    seeds = sorted({lg.run_seed for lg in runs if lg.run_seed is not None})
    n_runs = len(seeds) + sum(1 for lg in runs if lg.run_seed is None)
    c.data = {"runs": n_runs, "seeds": seeds}
    if not timed:
        c.status = Status.SKIP
        return c.settle(f"not required on {f.track} ({n_runs} run{'s' if n_runs != 1 else ''})")
    sub = f.submission or {}
    waived = sub.get("systems_only") is True
    loc_ptr = "/seeds" if "seeds" in sub else ""
    line, col = f.at(loc_ptr) if f.submission is not None else (0, 0)
    if n_runs < cfg.min_seeds:
        c.add("PG-STAT-001", "error", f"{n_runs} run{'s' if n_runs != 1 else ''} with a reported score "
              f"({', '.join(map(str, seeds)) or 'no seeds'}); a record needs at least {cfg.min_seeds} seeds of the "
              "same config (single-seed rows are rejected, #1963/#2020)",
              f.sub_path if f.submission is not None else f.folder, line, col, key="seeds")
    _same_config(c, distinct_runs(runs), cfg.min_seeds)
    if record is None:
        record = stated_record(f)
    if waived:
        reason = sub.get("systems_only_reason", "")
        c.add("PG-STAT-001", "note", f"systems-only waiver declared in submission.json: {reason}", f.sub_path,
              *f.at("/systems_only"), key="waiver")
    if record is None or not runs:
        c.data["comparison"] = None
        summary = (f"{n_runs} seed{'s' if n_runs != 1 else ''}; not compared with a record (none configured: "
                   "--record-bpb, --record-logs, [record] in --config, or compared_to in submission.json)")
        return c.settle(summary)
    cand_bpb = [lg.final.val_bpb for lg in runs]  # type: ignore[union-attr]
    cand_loss = [lg.final.val_loss for lg in runs]  # type: ignore[union-attr]
    # nats per token per bit per byte: ln2 · B/T of this run, to express a record given in bpb in nats
    ratio = statistics.fmean(lo / b for lo, b in zip(cand_loss, cand_bpb, strict=True))
    base_loss = list(record.val_loss) if record.val_loss else [b * ratio for b in record.val_bpb]
    readme = stats.readme_test(cand_loss, base_loss, margin=cfg.readme_margin_nats, alpha=cfg.readme_alpha)
    welch = stats.welch_test(cand_bpb, list(record.val_bpb), alpha=cfg.welch_alpha)
    readme_label = (f"README policy: ≥{cfg.readme_margin_nats:g} nats better at one-sided p<{cfg.readme_alpha:g} "
                    "(one-sample t-test on per-seed val_loss)")
    welch_label = f"Welch policy: {stats.welch_policy(cfg.welch_alpha)}, on per-seed val_bpb"
    gain_nats = statistics.fmean(base_loss) - statistics.fmean(cand_loss)
    gain_bpb = statistics.fmean(record.val_bpb) - statistics.fmean(cand_bpb)
    blocks = {"readme": {"readme"}, "welch": {"welch"}, "both": {"readme", "welch"}, "either": {"readme", "welch"},
              "none": set()}[cfg.blocking]
    results = {"readme": readme, "welch": welch}
    failed = {k for k, r in results.items() if not r["passed"]}
    if cfg.blocking == "either":
        blocking_fail = failed == {"readme", "welch"}
    else:
        blocking_fail = bool(failed & blocks)
    converted = "" if record.val_loss else \
        f" (record's nats converted from bpb with this run's {ratio:.4f} nats per bpb)"
    for key, label, res, detail in (
            ("readme", readme_label, readme, f"improvement {gain_nats:+.4f} nats{converted}"),
            ("welch", welch_label, welch, f"improvement {gain_bpb:+.5f} bpb")):
        met = "met" if res["passed"] else "not met"
        text = f"{label}: {detail}, t={_fmt(res['t'])}, df={_fmt(res['df'])}, p={_fmt(res['p'], 4)} -> {met}"
        if res["passed"]:
            level = "note"
        elif waived:
            level, text = "note", text + " (waived: systems-only)"
        elif key in blocks and blocking_fail:
            level = "error"
        else:
            level, text = "warning", text + (" (informative; not the blocking policy)" if key not in blocks else "")
        c.add("PG-STAT-001", level, text, f.sub_path if f.submission is not None else f.folder,
              *(f.at("/val_bpb") if f.submission is not None else (0, 0)), key=f"policy:{key}")
    c.data["comparison"] = {
        "record": record.to_dict(), "blocking": cfg.blocking, "waived": waived,
        "candidate": {"val_bpb": cand_bpb, "val_loss": cand_loss}, "record_val_loss_used": base_loss,
        "readme": _clean(readme), "welch": _clean(welch),
        "labels": {"readme": readme_label, "welch": welch_label},
    }
    verdicts = f"README {'met' if readme['passed'] else 'not met'}, Welch {'met' if welch['passed'] else 'not met'}"
    return c.settle(f"{n_runs} seed{'s' if n_runs != 1 else ''} vs {record.name} ({record.source}): {verdicts}; "
                    f"blocking: {cfg.blocking}" + ("; waived (systems-only)" if waived else ""))


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (NaN/inf become null)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _config_diffs(a: RunLog, b: RunLog) -> tuple[list[str], list[str]]:
    """(settings that differ in value, settings logged by only one of the two runs)."""
    values, presence = [], []
    if a.model_params is not None and b.model_params is not None and a.model_params != b.model_params:
        values.append(f"model_params {a.model_params:,} vs {b.model_params:,}")
    for k in sorted(set(a.config) & set(b.config)):
        if k != "model_params" and a.config[k] != b.config[k]:
            values.append(f"{k} {a.config[k]} vs {b.config[k]}")
    for k in sorted(set(a.config) ^ set(b.config)):
        if k != "model_params":
            presence.append(f"{k} only in {'the first' if k in a.config else 'this'} log")
    return values, presence


def _same_config(c: Check, runs: list[RunLog], min_seeds: int = 3) -> None:
    """The seeds must come from one submitted config (#2124). A folder may also keep runs of another config (an
    original run next to its compliance rerun): that blocks only when no config has enough seeds of its own."""
    if len(runs) < 2:
        return
    groups = []
    for lg in runs:
        same = {o.run_seed for o in runs if not _config_diffs(lg, o)[0]}
        groups.append(len(same))
    enough = max(groups) >= min_seeds
    ref = runs[0]
    for lg in runs[1:]:
        values, presence = _config_diffs(ref, lg)
        a_code, b_code = ref.derived_code_bytes, lg.derived_code_bytes
        if a_code is not None and b_code is not None and a_code != b_code:
            # code edits between runs (comments, logging) are what the maintainers accepted; a person looks
            c.add("PG-STAT-001", "warning", f"{_seed_label(lg)} ran a script of {b_code:,} bytes, "
                  f"{_seed_label(ref)} one of {a_code:,} ({b_code - a_code:+,} bytes): a person should check the "
                  "seeds ran the same submitted config (#2124)", lg.path, lg.code_line or lg.total_line,
                  key=f"code:{ref.path}")
        if values:
            shown = "; ".join(values[:4]) + ("; …" if len(values) > 4 else "")
            level = "warning" if enough else "error"
            also = (f" (another config has {max(groups)} seeds of its own, which the score may rest on; a person "
                    "looks)") if enough else ""
            c.add("PG-STAT-001", level, f"{_seed_label(lg)} ran a different configuration than {_seed_label(ref)} "
                  f"({shown}): the seeds must come from the same submitted config (#2124){also}", lg.path,
                  key=f"config:{ref.path}")
        elif presence:
            shown = "; ".join(presence[:4]) + ("; …" if len(presence) > 4 else "")
            c.add("PG-STAT-001", "warning", f"{_seed_label(lg)} logs other settings than {_seed_label(ref)} "
                  f"({shown}), none with a different value: a script version that logs more; a person looks",
                  lg.path, key=f"config:{ref.path}")
