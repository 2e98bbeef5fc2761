"""Run a sweep: list the PRs, reuse journalled records, audit the rest on every core, report progress.

Each PR is one task in a process pool (git resolution, extraction and audit all happen in the worker, so they
overlap across PRs). Finished records go to the journal immediately; Ctrl-C stops the pool and keeps them.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from audits.api import tool_version
from audits.cache import Cache
from audits.gitpr import read_branch, resolve_pr
from core.git import GitError, check_repo
from harness.sweep import worker
from harness.sweep.journal import Journal
from harness.sweep.progress import Progress
from harness.sweep.prs import PRInfo, commit_dates, label, list_pull_heads, parse_date


@dataclass
class Options:
    repo: Path
    prs: list[int] | None = None  # None: every refs/pull/N/head of the clone
    since: datetime | None = None
    jobs: int | None = None
    metadata: dict[int, dict] = field(default_factory=dict)
    cache_dir: Path | None = None  # None: no audit cache and no journal


@dataclass
class Outcome:
    infos: list[PRInfo]
    records: dict[int, dict[str, Any]]
    branch: str
    branch_tip: str
    reused: int = 0
    audited: int = 0


def select(opts: Options) -> tuple[list[PRInfo], dict[int, str]]:
    """The PRs to sweep, oldest first, and the requested ones that cannot be found (number -> reason)."""
    heads = list_pull_heads(opts.repo)
    missing: dict[int, str] = {}
    numbers = sorted(set(opts.prs)) if opts.prs else sorted(heads)
    for n in numbers:
        if n not in heads:
            try:
                heads[n] = resolve_pr(opts.repo, n)
            except GitError as e:
                missing[n] = str(e)
    dates = commit_dates(opts.repo, [heads[n] for n in numbers if n in heads])
    infos = []
    for n in numbers:
        if n in missing:
            continue
        info = label(PRInfo(n, heads[n], date=dates.get(heads[n], "")), opts.metadata.get(n))
        if opts.since is not None and (not info.date or parse_date(info.date) < opts.since):
            continue
        infos.append(info)
    infos.sort(key=lambda i: (i.date or "9999", i.number))
    return infos, missing


def run(opts: Options, stream=None, tty: bool | None = None) -> Outcome:
    check_repo(opts.repo)
    branch = read_branch(opts.repo, every_commit=True)
    infos, missing = select(opts)
    cache = Cache(opts.cache_dir, tool_version()) if opts.cache_dir is not None else None
    journal = Journal(opts.cache_dir, tool_version(), branch.tip) if opts.cache_dir is not None else None
    out = Outcome(infos, {}, branch.name, branch.tip)
    for n, reason in missing.items():
        out.records[n] = {"number": n, "head": None, "status": "error", "error": reason, "merged": False,
                          "results": [], "violations": [], "functions": [], "folders": []}
    progress = Progress(len(infos), stream=stream, tty=tty)
    todo = []
    for info in infos:
        rec = journal.get(info.number, info.head) if journal else None
        if rec is not None:
            out.records[info.number] = rec
            out.reused += 1
            progress.update(rec, reused=True)
        else:
            todo.append(info)

    def finish(rec: dict[str, Any]) -> None:
        out.records[rec["number"]] = rec
        out.audited += 1
        if journal is not None and rec["status"] != "error":
            journal.put(rec)
        progress.update(rec, reused=False)

    ctx = worker.Context(opts.repo, branch, cache)
    try:
        workers = opts.jobs or os.cpu_count() or 1
        if workers <= 1 or len(todo) <= 1:
            worker.init(ctx)
            for info in todo:
                finish(worker.audit_pr(info.number, info.head))
        else:
            _pooled(ctx, todo, min(workers, len(todo)), finish)
    finally:
        progress.close()
    return out


def _pool(ctx: worker.Context, n: int) -> ProcessPoolExecutor:
    import multiprocessing

    mp = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(max_workers=n, mp_context=mp, initializer=worker.init, initargs=(ctx,))


def _pooled(ctx: worker.Context, todo: list[PRInfo], n: int, finish: Callable[[dict[str, Any]], None]) -> None:
    """Audit `todo` on `n` processes; a PR whose worker dies is redone alone, and reported if it dies again."""
    redo: list[PRInfo] = []
    pool = _pool(ctx, n)
    try:
        pending: dict[Future, PRInfo] = {pool.submit(worker.audit_pr, i.number, i.head): i for i in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                info = pending.pop(fut)
                try:
                    finish(fut.result())
                except BrokenProcessPool:
                    redo.append(info)
                    redo.extend(pending.values())
                    pending.clear()
                    break
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for info in sorted(redo, key=lambda i: i.number):
        alone = _pool(ctx, 1)
        try:
            finish(alone.submit(worker.audit_pr, info.number, info.head).result())
        except BrokenProcessPool:
            finish({"number": info.number, "head": info.head, "status": "error", "merged": False,
                    "error": f"PR #{info.number}: the analyzer process crashed on this PR", "results": [],
                    "violations": [], "functions": [], "folders": []})
        finally:
            alone.shutdown(wait=True)
