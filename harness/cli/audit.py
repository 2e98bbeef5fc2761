"""`scorefirst audit`: parse the audit's arguments, run the shared run service (harness/run.py), write the outputs."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.cli.common import (EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Fatal, UsageError, from_cwd, last_line,
                                positive_int, stdout)
from harness.cli.dynamic_args import add_dynamic_arguments, dynamic_options

EPILOG = """\
exit codes:
  0  no active finding at or above --fail-on (default: error)
  1  findings at or above --fail-on (0 instead with --exit-zero)
  2  usage error, a file or folder that could not be audited (unreadable, binary, not UTF-8, syntax
     error, ...), an output that could not be written, or an internal error; --exit-zero never masks it.
     The other files are still audited and every requested output is still written.
The last line on stderr always says why, e.g. "scorefirst: exit 1: 3 findings at or above error (C3 FAIL)".
"""


def add_parser(sub) -> None:
    audit = sub.add_parser(
        "audit", help="statically audit a submission (file, folder, PR or the bundled examples)",
        description="Audit train_gpt.py files without running them. Each PATH (a file, or a folder audited "
                    "recursively) is one target with its own verdict.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("paths", nargs="*", metavar="PATH", help="file or folder to audit")
    audit.add_argument("--pr", nargs="+", action="extend", metavar="N",
                       help="label results with PR N; with --repo and no PATH, audit what PR N adds under records/ "
                            "(open, closed or merged; several PRs: --pr 605 596)")
    audit.add_argument("--repo", metavar="PATH", help="a git clone of openai/parameter-golf (with --pr)")
    audit.add_argument("--examples", action="store_true", help="audit the bundled example submissions")
    audit.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="state the run environment (repeatable); overrides the README's run command")
    audit.add_argument("--format", default="concise", choices=["concise", "full", "json", "sarif", "github"],
                       help="what to print on stdout (default: concise)")
    audit.add_argument("--json", metavar="FILE", help="also write the JSON result to FILE")
    audit.add_argument("--sarif", metavar="FILE", help="also write SARIF 2.1.0 to FILE")
    audit.add_argument("--html", metavar="DIR",
                       help="also render the HTML report into DIR (index.html, a page per submission and rule)")
    audit.add_argument("--fail-on", default="error", choices=["error", "warning", "info"],
                       help="lowest severity that makes the exit code 1 (default: error)")
    audit.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings (never masks exit 2)")
    audit.add_argument("--no-cache", action="store_true",
                       help="do not read or write the result cache (.scorefirst-cache or $SCOREFIRST_CACHE_DIR)")
    audit.add_argument("--jobs", type=positive_int, metavar="N", help="worker processes (default: all cores)")
    add_dynamic_arguments(audit)
    audit.set_defaults(func=cmd_audit)



def _examples_targets():
    import audits
    from audits.api import Target

    base = Path(audits.__file__).resolve().parent / "examples"
    records = base / "records"
    if not records.is_dir():
        raise UsageError("no bundled example submissions found (audits/examples/records/ is missing)")
    folders = sorted({p.parent for p in records.rglob("*.py") if "__pycache__" not in p.parts})
    if not folders:
        raise UsageError("no bundled example submissions found under audits/examples/records/")
    return [Target(from_cwd(f), [Path(from_cwd(f))]) for f in folders]


def _split_pr_values(args: argparse.Namespace) -> list[int]:
    """The PR numbers given to --pr (repeatable, several per flag); a non-number after them is a PATH
    (`audit --pr 605 train_gpt.py` means what it says)."""
    prs: list[int] = []
    for token in args.pr or []:
        if token.isdigit():
            if int(token) < 1:
                raise UsageError(f"argument --pr: expected a positive integer, got {token!r}")
            prs.append(int(token))
        elif not prs:
            raise UsageError(f"argument --pr: expected a positive integer, got {token!r}")
        else:
            args.paths.append(token)
    return list(dict.fromkeys(prs))


def _check_modes(args: argparse.Namespace, prs: list[int]) -> None:
    modes = sum([bool(args.paths), bool(args.repo), bool(args.examples)])
    if modes == 0:
        raise UsageError("audit needs a PATH, --repo PATH --pr N, or --examples")
    if modes > 1:
        raise UsageError("give PATHs, --repo, or --examples: one of them")
    if args.repo and not prs:
        raise UsageError("--repo needs --pr N (the pull request to audit)")
    if len(prs) > 1 and not args.repo:
        raise UsageError(f"--pr labels the PATHs with one pull request; got {len(prs)} "
                         f"({', '.join(map(str, prs))}): give one, or use --repo to audit several")


def _targets(args: argparse.Namespace, prs: list[int], workdirs: list) -> list:
    """The audit targets the arguments name; a PR's extraction folders are added to `workdirs` for cleanup."""
    from audits.api import Target
    from core.competition import pr_url_for

    if args.repo:
        from audits.gitpr import pr_targets, read_branch
        from core.git import GitError

        targets = []
        try:
            branch = None
            for n in prs:
                workdir, found = pr_targets(Path(args.repo), n, branch)
                workdirs.append(workdir)
                targets.extend(found)
                branch = branch or read_branch(Path(args.repo))
        except GitError as e:
            raise Fatal(str(e)) from None
        return targets
    if args.examples:
        return _examples_targets()
    pr_url = pr_url_for(prs[0]) if prs else None
    return [Target(os.path.normpath(p).replace(os.sep, "/"), [Path(p)], pr=prs[0] if prs else None, pr_url=pr_url)
            for p in args.paths]


def _write_outputs(args: argparse.Namespace, results, sarif_root: str, html_logs) -> list[str]:
    """Write --json, --sarif and --html; the reasons of those that could not be written."""
    from audits.outputs import render, write_atomic

    failures = []
    for fmt, dest in (("json", args.json), ("sarif", args.sarif)):
        if dest:
            try:
                write_atomic(dest, render(fmt, results, root=sarif_root))
            except OSError as e:
                failures.append(f"cannot write {dest}: {e.strerror or e}")
    if args.html:
        from reports.render import render_results

        try:
            render_results(results, args.html, logs=html_logs)
        except OSError as e:
            failures.append(f"cannot write the HTML report to {args.html}: {e.strerror or e}")
    return failures


def cmd_audit(args: argparse.Namespace) -> int:
    from audits.api import tool_version
    from audits.cache import Cache, default_cache_dir
    from audits.outputs import render
    from audits.runenv import EnvError, parse_env_args
    from harness.run import RunError, audit_and_run

    try:
        env_settings = parse_env_args(args.env)
    except EnvError as e:
        raise UsageError(str(e)) from None
    prs = _split_pr_values(args)
    _check_modes(args, prs)
    cache = None if args.no_cache else Cache(default_cache_dir(), tool_version())
    workdirs: list = []
    sarif_root = args.repo if args.repo else os.getcwd()
    html_logs = None
    try:
        targets = _targets(args, prs, workdirs)
        try:
            results = audit_and_run(targets, env_settings, jobs=args.jobs, cache=cache,
                                    dynamic=dynamic_options(args))
        except RunError as e:
            raise Fatal(str(e)) from None
        if args.html:  # the train logs' time budgets, read while a PR's extraction still exists
            from reports.inputs import log_budgets

            html_logs = [log_budgets(t.paths[0]) if len(t.paths) == 1 and t.paths[0].is_dir() else None
                         for t in targets]
    finally:
        for workdir in workdirs:
            workdir.cleanup()

    write_failures = _write_outputs(args, results, sarif_root, html_logs)
    stdout(render(args.format, results, root=sarif_root))
    code, reason = decide(results, args.fail_on, args.exit_zero)
    if args.dynamic:
        from harness import dynamic

        if args.format in ("concise", "full"):
            stdout(dynamic.format_terminal(results))
        code, reason = dynamic.decide(results, code, reason, args.fail_on, args.exit_zero)
    if write_failures:
        code, reason = EXIT_ERROR, "; ".join(write_failures)
    last_line(code, reason)
    return code


def decide(results, fail_on: str, exit_zero: bool) -> tuple[int, str]:
    """The exit code and its one-line reason."""
    from audits.types import Severity, Status, Verdict

    errors = [fr for r in results for fr in r.errors]
    if errors:
        n = len(errors)
        first = errors[0].error or errors[0].path
        more = f" (+{n - 1} more)" if n > 1 else ""
        return EXIT_ERROR, f"{n} file{'s' if n != 1 else ''} could not be audited: {first}{more}"
    threshold = Severity(fail_on)
    gating = [f for r in results for f in r.findings
              if f.status is Status.ACTIVE and f.severity.rank >= threshold.rank]
    worst: dict = {}
    for r in results:  # the worst verdict of each condition over every target
        for c, v in r.conditions.items():
            if v.rank > worst.get(c, Verdict.PASS).rank:
                worst[c] = v
    bad = [f"{c.value} {v.value}" for c, v in sorted(worst.items(), key=lambda kv: list(type(kv[0])).index(kv[0]))]
    overall = max((r.overall for r in results), key=lambda v: v.rank, default=Verdict.PASS)
    why = f"({', '.join(bad)})" if bad else f"(overall {overall.value})"
    if gating:
        n = len(gating)
        where = ""
        if len(results) > 1:
            hit = {f.path for f in gating}
            k = sum(1 for r in results if any(fr.path in hit for fr in r.files))
            where = f" in {k} of {len(results)} targets"
        reason = f"{n} finding{'s' if n != 1 else ''} at or above {fail_on}{where} {why}"
        if exit_zero:
            return EXIT_OK, reason + "; --exit-zero"
        return EXIT_FINDINGS, reason
    return EXIT_OK, f"no findings at or above {fail_on} {why}"
