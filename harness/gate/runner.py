"""Run the gate: find the submission folders of a change, copy them out of git, check each, return a `GateResult`."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from audits.api import Target, tool_info
from audits.gitpr import merging_commit
from core.competition import pr_url_for
from core.runlogs import read_logs
from harness.gate import checks, gitdiff
from harness.gate.config import GateConfig, Record
from harness.gate.gitdiff import GateError
from harness.gate.model import FolderResult, GateResult
from harness.run import DynamicOptions, RunError, audit_and_run


@dataclass
class GateOptions:
    repo: Path = field(default_factory=lambda: Path("."))
    base: str | None = None
    head: str = "HEAD"
    config: GateConfig = field(default_factory=GateConfig)
    pr: int | None = None
    jobs: int | None = None
    cache_dir: object = None  # a Cache, a folder, or None (no cache)
    html_dir: str | None = None  # also render the HTML report (the `reports` package) of the audited folders
    dynamic: DynamicOptions | None = None  # also run each folder's script, sandboxed and traced


def record_from_logs(folder: str | os.PathLike[str]) -> Record:
    """The record to beat, read from that record's own train logs (their reported stages)."""
    p = Path(folder)
    if not p.is_dir():
        raise GateError(f"--record-logs {p}: no such folder")
    logs = read_logs(p)
    finals = [lg.final for lg in logs if lg.final is not None]
    if not finals:
        raise GateError(f"--record-logs {p}: no train log with a reported val_bpb found")
    return Record(name=p.name, val_bpb=[s.val_bpb for s in finals], val_loss=[s.val_loss for s in finals],
                  source=f"--record-logs {p}")


def _render_html(out_dir: str, folders: list[checks.Folder], audits: dict, cfg: GateConfig) -> str | None:
    """The HTML report of the folders' audits with their time budgets; the reason it failed, or None.

    Times over the limits are marked as the budgets check decides: with the configured caps, none on an untimed track.
    """
    try:
        from reports.inputs import time_budgets
        from reports.render import render_results
    except ImportError as e:
        return f"cannot render the HTML report: {e}"
    results = [audits[f.folder] for f in folders]
    logs = []
    for f in folders:
        timed = f.track in cfg.timed_tracks
        logs.append(time_budgets(f.logs, cfg.train_limit_s if timed else math.inf,
                                 cfg.eval_limit_s if timed else math.inf))
    try:
        render_results(results, out_dir, logs=logs)
    except OSError as e:
        return f"cannot write the HTML report to {out_dir}: {e.strerror or e}"
    return None


def run_gate(opts: GateOptions) -> GateResult:
    repo = opts.repo
    cfg = opts.config
    result = GateResult(repo=str(repo), base=opts.base or "", head=opts.head, tool=tool_info(), pr=opts.pr)
    try:
        gitdiff.check_repo(repo)
        base_ref = opts.base or gitdiff.default_base(repo)
        result.base = base_ref
        result.base_commit = gitdiff.resolve(repo, base_ref, "--base")
        result.head_commit = gitdiff.resolve(repo, opts.head, "--head")
        result.merge_base = gitdiff.merge_base(repo, result.base_commit, result.head_commit)
        if result.merge_base == result.head_commit != result.base_commit:
            # already merged (a merged PR, gated after the fact): the change is what its merge commit brought in
            found = merging_commit(repo, result.head_commit, result.base_commit)
            if found is not None:
                result.merged_by, result.merge_base = found
        commit = result.merged_by or result.head_commit
        if cfg.record is None and cfg.record_logs:
            cfg.record = record_from_logs(cfg.record_logs)
        result.config = cfg.to_dict()
        chs = gitdiff.changes(repo, result.merge_base, commit)
        result.changed = [c.to_dict() for c in chs]
        names = gitdiff.submission_folders(chs)
        if not names:
            return result
        with tempfile.TemporaryDirectory(prefix="scorefirst-gate-") as tmp:
            root = Path(tmp)
            folders = []
            for name in names:
                path = gitdiff.extract(repo, commit, name, root)
                change = "modified" if gitdiff.exists_at(repo, result.merge_base, name) else "added"
                entries = gitdiff.head_files(repo, commit, name)
                folder = checks.load_folder(name, path, change, entries)
                if folder.sub_error is not None:
                    # the format check reports it; the audit never parses what the gate rejected (it may be
                    # built to break a JSON parser), so it leaves the gate's own extracted copy
                    (path / "submission.json").unlink(missing_ok=True)
                folders.append(folder)
            audited = [f for f in folders if f.root.is_dir()]
            targets = [Target(f.folder, [f.root], display_root=root, pr=opts.pr,
                              pr_url=pr_url_for(opts.pr) if opts.pr else None) for f in audited]
            try:
                results = audit_and_run(targets, jobs=opts.jobs, cache=opts.cache_dir, dynamic=opts.dynamic)
            except RunError as e:
                raise GateError(str(e)) from None
            audits = dict(zip((f.folder for f in audited), results, strict=True))
            for f in folders:
                audit = audits.get(f.folder)
                fr = FolderResult(folder=f.folder, track=f.track, change=f.change, audit=audit)
                fr.checks["legality"] = checks.legality_check(f, audit)
                fr.checks["format"] = checks.format_check(f, cfg, chs, names)
                fr.checks["logs"] = checks.logs_check(f, cfg)
                fr.checks["budgets"] = checks.budgets_check(f, cfg)
                fr.checks["significance"] = checks.significance_check(f, cfg, cfg.record)
                fr.seeds = checks.seed_rows(f, cfg.code_counting, cfg.train_scope == "artifact")
                result.folders.append(fr)
            if opts.html_dir:
                result.html_error = _render_html(opts.html_dir, audited, audits, cfg)
    except GateError as e:
        result.error = str(e)
    return result
