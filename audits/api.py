"""Audit files and folders: find the Python files, state the run environment, use both cores and the cache.

`audit_paths` is the library entry point (one `AuditResult` for everything it is given); `audit_targets`
audits several submissions in one go (one `AuditResult` each, one shared process pool), which is what the
command line uses. A file that cannot be audited never stops the others: it becomes a `FileResult` with
`error`/`error_kind`, and callers decide what that means for the exit code.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from audits import jsonguard
from audits.cache import Cache, EnvReads
from audits.entrypoints import auxiliary_files
from audits.runevidence import default_mention, folder_text
from audits.results import AuditResult, EnvSetting, FileResult
from audits.runenv import effective_env, run_commands_env
from audits.types import Severity, Status
from audits.linking import imported_modules
from audits.source import InputError, SourceFile, read_source, sibling_modules
from core.competition import pr_url_for
from core.version import __version__

GRAMMAR_TARGET = "3.12"
PARALLEL_MIN_FILES = 4
SKIP_DIRS = frozenset({"__pycache__", ".venv", "venv", "site-packages", "node_modules"})
SUBMISSION_JSON = "submission.json"


def tool_version() -> str:
    return __version__


def tool_info() -> dict[str, str]:
    try:
        from importlib.metadata import version

        libcst_version = version("libcst")
    except Exception:  # pragma: no cover - libcst is a dependency; metadata may be missing in odd installs
        libcst_version = "unknown"
    return {
        "name": "scorefirst",
        "version": tool_version(),
        "libcst": libcst_version,
        "python": platform.python_version(),
        "grammar": GRAMMAR_TARGET,
    }


@dataclass
class Target:
    """One submission to audit: files and folders reported as one `AuditResult`.

    `display_root`, when set, makes reported paths relative to it (used for git extractions and the bundled
    examples, whose on-disk location is a private detail); otherwise paths are shown as given.
    """

    name: str
    paths: list[Path]
    display_root: Path | None = None
    pr: int | None = None
    pr_url: str | None = None


@dataclass
class _Job:
    target: int
    slot: int
    src: SourceFile
    env: dict[str, set[str]]


@dataclass
class _Plan:
    result: AuditResult
    slots: list[FileResult | None] = field(default_factory=list)
    not_run: dict[int, str] = field(default_factory=dict)  # slot -> why nothing in the scored run runs that file
    folder_of: dict[int, Path] = field(default_factory=dict)  # slot -> the folder whose documents describe its run


def audit_paths(paths: Sequence[str | os.PathLike[str]], env_settings: Iterable[EnvSetting] = (),
                pr: int | None = None, pr_url: str | None = None, jobs: int | None = None,
                cache_dir: str | os.PathLike[str] | Cache | None = None) -> AuditResult:
    """Audit files and/or folders as one submission. `cache_dir=None` audits without a cache."""
    ps = [Path(p) for p in paths]
    name = ", ".join(_as_given(p) for p in ps)
    if pr is not None and pr_url is None:
        pr_url = pr_url_for(pr)
    return audit_targets([Target(name, ps, pr=pr, pr_url=pr_url)], env_settings, jobs, cache_dir)[0]


def audit_targets(targets: Sequence[Target], env_settings: Iterable[EnvSetting] = (), jobs: int | None = None,
                  cache_dir: str | os.PathLike[str] | Cache | None = None) -> list[AuditResult]:
    """One `AuditResult` per target; every file of every target goes through one shared pool."""
    cli_env = list(env_settings)
    cache = cache_dir if isinstance(cache_dir, Cache) or cache_dir is None else Cache(cache_dir, tool_version())
    info = tool_info()
    plans: list[_Plan] = []
    pending: list[_Job] = []
    for ti, target in enumerate(targets):
        plan = _Plan(AuditResult(target=target.name, pr=target.pr, pr_url=target.pr_url, tool=dict(info)))
        plans.append(plan)
        _plan_target(ti, target, cli_env, plan, pending, cache)
    for job, (fr, reads) in zip(pending, _run_jobs(pending, jobs)):
        plans[job.target].slots[job.slot] = fr
        if cache is not None and _cacheable(fr):
            cache.store(_content_id(job.src), job.env, job.src.local_modules, reads, fr)
    out = []
    for plan in plans:
        docs: dict[Path, str] = {}
        for slot, folder in plan.folder_of.items():
            fr = plan.slots[slot]
            if fr is not None and any(f.default_keys for f in fr.findings):
                if folder not in docs:  # read the README/logs only when a finding asks what they say
                    docs[folder] = folder_text(folder)
                _warn_default_only(fr, docs[folder])
        for slot, reason in plan.not_run.items():
            fr = plan.slots[slot]
            if fr is not None:
                _mark_not_run(fr, reason)
        plan.result.files = sorted((fr for fr in plan.slots if fr is not None), key=lambda fr: fr.path)
        _place_linked(plan.result.files)
        out.append(plan.result)
    return out


# --- planning: which files, under which environment -------------------------------------------------------


def _as_given(p: Path) -> str:
    return os.path.normpath(str(p)).replace(os.sep, "/")


def _display(path: Path, base: Path, base_display: str) -> str:
    rel = path.relative_to(base).as_posix()
    if rel == ".":
        return base_display
    return rel if base_display in ("", ".") else f"{base_display.rstrip('/')}/{rel}"


def _plan_target(ti: int, target: Target, cli_env: list[EnvSetting], plan: _Plan, pending: list[_Job],
                 cache: Cache | None) -> None:
    result = plan.result
    files: list[tuple[Path, str, Path, str]] = []  # (path, display, audited folder, its display)
    seen_env_dirs: dict[Path, list[EnvSetting]] = {}
    for given in target.paths:
        if target.display_root is not None:
            base_display = _display(given, target.display_root, "") if _is_under(given, target.display_root) else _as_given(given)
        else:
            base_display = _as_given(given)
        if given.is_symlink():
            plan.slots.append(_error(base_display, "symlink", f"{base_display}: is a symbolic link; not followed"))
            continue
        if not given.exists():
            plan.slots.append(_error(base_display, "missing", f"{base_display}: no such file or directory"))
            continue
        if given.is_dir():
            found = list(_walk(given, base_display, plan))
            if not found and not any(fr and fr.path.startswith(base_display) for fr in plan.slots):
                plan.slots.append(_error(base_display, "no-python-files", f"{base_display}: no Python files to audit"))
            files.extend((p, d, given, base_display) for p, d in found)
            _load_submission(given, base_display, plan)
        else:
            parent_display = base_display.rsplit("/", 1)[0] if "/" in base_display else "."
            files.append((given, base_display, given.parent, parent_display))
    # Run commands of the audited folder and of each file's own folder below it.
    texts: dict[Path, str] = {}
    slot_of: dict[Path, int] = {}
    for path, display, root, root_display in files:
        settings = list(cli_env)
        for folder in _folders_between(path.parent, root):
            if folder not in seen_env_dirs:
                found_env = _run_commands(folder, _display(folder, root, root_display))
                seen_env_dirs[folder] = found_env
                result.env.extend(found_env)
            settings.extend(seen_env_dirs[folder])
        env = effective_env(settings)
        slot = len(plan.slots)
        plan.slots.append(None)
        try:
            src = read_source(path, display)
        except InputError as e:
            if e.kind == "empty" and path not in target.paths:
                plan.slots.pop()  # an empty module found in a folder holds no code to audit; named alone, it is an error
                continue
            plan.slots[slot] = _error(display, e.kind, str(e))
            continue
        texts[path] = src.text
        slot_of[path] = slot
        src.local_modules = sibling_modules(path)
        src.linked = _linked_sources(path, display, src)
        planned = {p for p, *_ in files}
        for mod in src.linked.values():  # a module audited with the script is a file of the submission too
            mpath = path.parent / Path(mod.path).name
            if mpath not in planned:
                files.append((mpath, mod.path, root, root_display))
                planned.add(mpath)
        if cache is not None:
            hit = cache.find(_content_id(src), env, src.local_modules, display)
            if hit is not None:
                plan.slots[slot] = hit
                continue
        pending.append(_Job(ti, slot, src, env))
    for folder in {p.parent for p in texts}:
        for path, reason in auxiliary_files(folder, texts).items():
            plan.not_run[slot_of[path]] = reason
    plan.folder_of.update({slot: path.parent for path, slot in slot_of.items()})
    seen_cli = {(s.key, s.value) for s in result.env}
    result.env[:0] = [s for s in cli_env if (s.key, s.value) not in seen_cli]


MAX_LINKED = 8


def _content_id(src: SourceFile) -> str:
    """What a cached result depends on in the files: the script and the modules audited with it."""
    if not src.linked:
        return src.sha256
    parts = [src.sha256] + [m.sha256 for m in src.linked.values()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _linked_sources(path: Path, display: str, src: SourceFile) -> dict[str, SourceFile]:
    """The same-folder module files `src` imports, and the ones they import, by module name in first-import
    order (read as text like the script; never imported or run). One that cannot be read is left out: its
    import stays a "cannot verify"."""
    local = src.local_modules or {}
    folder_display = display.rsplit("/", 1)[0] + "/" if "/" in display else ""
    out: dict[str, SourceFile] = {}
    todo = [src.text]
    while todo and len(out) < MAX_LINKED:
        for name in imported_modules(todo.pop(0)):
            fname = local.get(name, "")
            if not fname.endswith(".py") or name in out or len(out) >= MAX_LINKED:
                continue
            try:
                mod = read_source(path.parent / fname, folder_display + fname)
            except InputError:
                continue
            out[name] = mod
            todo.append(mod.text)
    return out


def _place_linked(files: list[FileResult]) -> None:
    """Findings a script's audit made inside a module it imports go to that module's own entry when it is
    audited too, replacing what its audit alone reported on the same line (which lacked the calling context)."""
    by_path = {fr.path: fr for fr in files if fr.error is None}
    for fr in files:
        moved = [f for f in fr.findings if f.path != fr.path and f.path in by_path]
        if not moved:
            continue
        fr.findings = [f for f in fr.findings if f not in moved]
        for f in moved:
            other = by_path[f.path]
            other.findings = [g for g in other.findings if (g.rule_id, g.line) != (f.rule_id, f.line)]
        for f in moved:
            by_path[f.path].findings.append(f)
    for fr in files:
        fr.findings.sort(key=lambda f: (f.origin.layer if f.origin else 0, f.path != fr.path, f.path, f.line, f.rule_id))


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _folders_between(folder: Path, root: Path) -> list[Path]:
    """`root` and every folder from it down to `folder` (just `folder` when it is not below `root`)."""
    if not _is_under(folder, root):
        return [folder]
    chain = [folder]
    while chain[-1] != root and chain[-1].parent != chain[-1]:
        chain.append(chain[-1].parent)
    return list(reversed(chain))


def _run_commands(folder: Path, folder_display: str) -> list[EnvSetting]:
    """Run-command settings of one folder, their source shown as `<folder>/README.md:12`."""
    try:
        found = run_commands_env(folder)
    except OSError:
        return []
    prefix = "" if folder_display in ("", ".") else folder_display.rstrip("/") + "/"
    for s in found:
        s.source = prefix + s.source
    return found


def _walk(folder: Path, base_display: str, plan: _Plan) -> Iterable[tuple[Path, str]]:
    """Every *.py below `folder` (sorted), skipping hidden and environment folders; symlinks become errors."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d in SKIP_DIRS:
                continue
            if (here / d).is_symlink():
                disp = _display(here / d, folder, base_display)
                plan.slots.append(_error(disp, "symlink", f"{disp}: is a symbolic link to a folder; not followed"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield here / name, _display(here / name, folder, base_display)


def _load_submission(folder: Path, base_display: str, plan: _Plan) -> None:
    path = folder / SUBMISSION_JSON
    if not path.exists() and not path.is_symlink():
        return
    disp = _display(path, folder, base_display)
    if path.is_symlink():
        plan.slots.append(_error(disp, "symlink", f"{disp}: is a symbolic link; not followed"))
        return
    try:
        text = path.read_text(encoding="utf-8")
        problem = jsonguard.precheck(text)  # hostile input: nesting, huge numbers, NaN, megabytes
        if problem is not None:
            plan.slots.append(_error(disp, "submission-json", f"{disp}:{problem.line}:{problem.column}: {problem.message}"))
            return
        data = json.loads(text)
    except json.JSONDecodeError as e:
        plan.slots.append(_error(disp, "submission-json", f"{disp}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"))
        return
    except UnicodeDecodeError:
        plan.slots.append(_error(disp, "submission-json", f"{disp}: not valid UTF-8"))
        return
    except OSError as e:
        plan.slots.append(_error(disp, "unreadable", f"{disp}: {e.strerror or e}"))
        return
    if not isinstance(data, dict):
        plan.slots.append(_error(disp, "submission-json", f"{disp}: expected a JSON object, got {type(data).__name__}"))
        return
    plan.result.submission = data


def _warn_default_only(fr: FileResult, text: str) -> None:
    """An illegal path kept off only by an environment default, in a folder whose README, submission.json or logs
    describe that feature: the default does not decide what produced the score, so a person must look."""
    for f in fr.findings:
        if f.status is not Status.INACTIVE or not f.default_keys:
            continue
        hit = default_mention(f.default_keys, text)
        if hit is None:
            continue
        item, word = hit
        key = item.split("=", 1)[0]
        f.status = Status.ACTIVE
        f.severity = Severity.WARNING
        f.message = (f"{f.message} — off only by the default {item}, but the folder's README, logs or "
                     f"submission.json mention `{word.strip()}` and no run command states {key}: illegal when "
                     f"{key} is set")


def _mark_not_run(fr: FileResult, reason: str) -> None:
    """A file outside the scored run (a data-preparation or plotting tool): its findings are shown as inactive,
    with the reason, never as violations of the scored run."""
    for f in fr.findings:
        if f.status is Status.ACTIVE:
            f.status = Status.INACTIVE
            f.status_reason = reason


def _error(display: str, kind: str, message: str) -> FileResult:
    return FileResult(path=display, error=message, error_kind=kind)


def _cacheable(fr: FileResult) -> bool:
    return fr.error is None or fr.error_kind in ("syntax", "too-complex")


# --- execution ---------------------------------------------------------------------------------------------


def audit_one(src: SourceFile, env: dict[str, set[str]]) -> FileResult:
    """Audit one decoded file; never raises (every failure becomes an error entry)."""
    from audits.engine import audit_source

    try:
        return audit_source(src, env)
    except InputError as e:
        return _error(src.path, e.kind, str(e))
    except RecursionError:
        return _error(src.path, "too-complex", f"{src.path}: code nested too deeply for the analyzer")
    except MemoryError:
        return _error(src.path, "too-complex", f"{src.path}: out of memory while analyzing")
    except Exception as e:  # an analyzer bug must not hide the other files' results
        return _error(src.path, "internal", f"{src.path}: internal error: {type(e).__name__}: {_one_line(e)}")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def _worker(src: SourceFile, env: dict[str, set[str]]) -> tuple[FileResult, list[str] | None]:
    """The file's result and the environment keys its audit read (what the cache keys it by)."""
    reads = EnvReads(env)
    return audit_one(src, reads), reads.keys_read  # type: ignore[arg-type]


def _run_jobs(jobs_list: list[_Job], jobs: int | None) -> list[tuple[FileResult, list[str] | None]]:
    workers = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    if workers <= 1 or len(jobs_list) < PARALLEL_MIN_FILES:
        return [_worker(j.src, j.env) for j in jobs_list]
    results: list[tuple[FileResult, list[str] | None] | None] = [None] * len(jobs_list)
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs_list)), mp_context=_mp_context()) as pool:
            futures = [pool.submit(_worker, j.src, j.env) for j in jobs_list]
            for i, fut in enumerate(futures):
                try:
                    results[i] = fut.result()
                except BrokenProcessPool:
                    break
    except BrokenProcessPool:
        pass
    # A worker died (a native crash in the parser): redo what is missing one file per process, so only the
    # file that crashes is reported and every other file is still audited.
    for i, r in enumerate(results):
        if r is None:
            results[i] = _isolated(jobs_list[i])
    return [r for r in results if r is not None]


def _isolated(job: _Job) -> tuple[FileResult, list[str] | None]:
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=_mp_context()) as pool:
            return pool.submit(_worker, job.src, job.env).result()
    except BrokenProcessPool:
        return _error(job.src.path, "internal", f"{job.src.path}: the analyzer process crashed on this file"), None


def _mp_context():
    import multiprocessing

    # fork shares the already-imported analyzer with the workers (no re-import per worker); elsewhere spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")
