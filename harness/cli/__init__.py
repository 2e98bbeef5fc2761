"""The `scorefirst` command line (also `python -m harness`).

The audit path imports libcst and the `audits` package only: never torch, never the submission.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from core.version import __version__
from harness.cli.common import (EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Fatal, Parser, UsageError, from_cwd, last_line, positive_int,
                                 stdout)

EPILOG = """\
exit codes:
  0  no active finding at or above --fail-on (default: error)
  1  findings at or above --fail-on (0 instead with --exit-zero)
  2  usage error, a file or folder that could not be audited (unreadable, binary, not UTF-8, syntax
     error, ...), an output that could not be written, or an internal error; --exit-zero never masks it.
     The other files are still audited and every requested output is still written.
The last line on stderr always says why, e.g. "scorefirst: exit 1: 3 findings at or above error (C3 FAIL)".
"""


def _version_text() -> str:
    from audits.api import tool_info

    t = tool_info()
    return f"scorefirst {__version__} (libcst {t['libcst']}, Python {t['python']}, parses Python {t['grammar']} syntax)"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scorefirst",
        description="Compliance auditing for Parameter Golf submissions: a static legality audit that never runs "
                    "the submission, with a verdict per condition (C1-C4, DATA, CAL, NET, BYTES).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

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

    report = sub.add_parser(
        "report", help="render the HTML report from stored audit and run-reference results",
        description="Render self-contained HTML pages (index.html, a page per submission, reference run and rule) "
                    "from stored results, without re-running anything. RESULTS are audit result JSON files "
                    "(`audit --json`: one result or {\"results\": [...]}) and run-reference results.json files or "
                    "run directories. Re-rendering the same results gives the same pages; only the footer "
                    "(versions, time) differs.",
        epilog="exit codes: 0 pages written; 2 an input that cannot be read or an output that cannot be written.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("results", nargs="+", metavar="RESULTS", help="audit JSON, run-reference results.json or run dir")
    report.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the pages into")
    report.add_argument("--source-root", action="append", default=[], metavar="DIR",
                        help="where audited files live when the JSON does not store their source (repeatable; "
                             "a copy is used only if its SHA-256 matches the audit)")
    report.add_argument("--title", help="title of index.html (default: Compliance report)")
    report.set_defaults(func=cmd_report)

    rules = sub.add_parser("rules", help="list the rules, or print one rule's documentation and ruling",
                           description="List every rule, or print one rule's full documentation and the ruling "
                                       "it rests on.")
    rules.add_argument("rule_id", nargs="?", metavar="RULE-ID")
    rules.add_argument("--format", default="text", choices=["text", "json", "markdown"])
    rules.set_defaults(func=cmd_rules)

    from harness.gate.command import add_parser as add_gate_parser
    from harness.sweep.command import add_parser as add_sweep_parser

    add_gate_parser(sub)
    add_sweep_parser(sub, positive_int)

    try:
        from reference_model.commands import register
    except ImportError:
        pass
    else:
        register(sub)
    return parser


# --- rules ------------------------------------------------------------------------------------------------


def cmd_rules(args: argparse.Namespace) -> int:
    import json

    from audits.outputs import ruledoc
    from audits.registry import catalogue, entry_by_id

    if args.rule_id:
        rule = entry_by_id(args.rule_id) or entry_by_id(args.rule_id.upper()) or entry_by_id(args.rule_id.lower())
        if rule is None:
            raise UsageError(f"unknown rule {args.rule_id!r}; `scorefirst rules` lists them")
        if args.format == "json":
            text = json.dumps(rule.metadata(), indent=2) + "\n"
        elif args.format == "markdown":
            text = ruledoc.rule_markdown(rule)
        else:
            text = ruledoc.rule_text(rule)
    else:
        rules = list(catalogue())
        if args.format == "json":
            text = json.dumps([r.metadata() for r in rules], indent=2) + "\n"
        elif args.format == "markdown":
            text = ruledoc.rules_markdown(rules)
        else:
            text = ruledoc.rules_text(rules)
    stdout(text)
    return EXIT_OK


# --- audit ------------------------------------------------------------------------------------------------


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


def cmd_audit(args: argparse.Namespace) -> int:
    from audits.api import Target, audit_targets, pr_url_for, tool_version
    from audits.cache import Cache, default_cache_dir
    from audits.runenv import EnvError, parse_env_args

    try:
        env_settings = parse_env_args(args.env)
    except EnvError as e:
        raise UsageError(str(e)) from None
    prs = _split_pr_values(args)
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

    cache = None if args.no_cache else Cache(default_cache_dir(), tool_version())
    pr_url = pr_url_for(prs[0]) if prs else None
    workdirs = []
    sarif_root = args.repo if args.repo else os.getcwd()
    html_logs = None
    try:
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
        elif args.examples:
            targets = _examples_targets()
        else:
            targets = [Target(os.path.normpath(p).replace(os.sep, "/"), [Path(p)], pr=prs[0] if prs else None,
                              pr_url=pr_url)
                       for p in args.paths]
        results = audit_targets(targets, env_settings, jobs=args.jobs, cache_dir=cache)
        if args.dynamic:
            _run_dynamic(args, targets, results, env_settings)
        if args.html:  # the train logs' time budgets, read while a PR's extraction still exists
            from reports.inputs import log_budgets

            html_logs = [log_budgets(t.paths[0]) if len(t.paths) == 1 and t.paths[0].is_dir() else None
                         for t in targets]
    finally:
        for workdir in workdirs:
            workdir.cleanup()

    from audits.outputs import render, write_atomic

    write_failures = []
    for fmt, dest in (("json", args.json), ("sarif", args.sarif)):
        if dest:
            try:
                write_atomic(dest, render(fmt, results, root=sarif_root))
            except OSError as e:
                write_failures.append(f"cannot write {dest}: {e.strerror or e}")
    if args.html:
        from reports.render import render_results

        try:
            render_results(results, args.html, logs=html_logs)
        except OSError as e:
            write_failures.append(f"cannot write the HTML report to {args.html}: {e.strerror or e}")
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


def add_dynamic_arguments(parser: argparse.ArgumentParser) -> None:
    """The dynamic-audit options, shared by `audit --dynamic` and `gate --dynamic`."""
    dyn = parser.add_argument_group(
        "dynamic audit", "--dynamic also RUNS each PATH's script, sandboxed (no network, private work dir, limits) "
                         "and traced, on a small dataset in the official layout, then checks C1-C4 on what ran")
    dyn.add_argument("--dynamic", action="store_true", help="run the instrumented (dynamic) audit as well")
    dyn.add_argument("--data-path", metavar="DIR", help="official shards to cut the audit split from "
                                                        "(default: the embedded corpus)")
    dyn.add_argument("--tokenizer-path", metavar="FILE", help="SentencePiece model going with --data-path")
    dyn.add_argument("--val-tokens", type=positive_int, default=65_536, metavar="N",
                     help="validation targets of the audit split: N targets = N+1 tokens (default: 65536)")
    dyn.add_argument("--iterations", type=positive_int, default=20, metavar="N",
                     help="ITERATIONS for the short training run (default: 20)")
    dyn.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                     help="run under torchrun with N processes (1: plain python); per-rank ledgers are merged "
                          "(default: as the README's torchrun command says, capped at the GPUs with --gpu, at 2 "
                          "gloo ranks on the CPU)")
    dyn.add_argument("--gpu", action="store_true", help="let the script see the GPUs (no address-space limit)")
    dyn.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare", "none"],
                     help="isolation (default: bubblewrap, and nothing less; 'unshare' (network only) and 'none' "
                          "only when named)")
    dyn.add_argument("--timeout", type=positive_int, default=900, metavar="S", help="wall-time limit per run")
    dyn.add_argument("--memory-mb", type=positive_int, default=16_384, metavar="MB", help="memory limit per run")
    dyn.add_argument("--disk-mb", type=positive_int, default=4096, metavar="MB",
                     help="size of the run's work directory (a tmpfs when run as root), /tmp and /dev/shm")
    dyn.add_argument("--no-probes", action="store_true", help="skip the C1 future-perturbation probe (a second run)")
    dyn.add_argument("--reported-label", metavar="REGEX",
                     help="which printed val_loss/val_bpb line is the reported score (default: the last one)")
    dyn.add_argument("--ledger-dir", metavar="DIR", help="keep each run's ledger and logs under DIR")


def _run_dynamic(args: argparse.Namespace, targets, results, env_settings) -> None:
    try:
        from harness import dynamic
        from harness.sandbox import SandboxUnavailable
        from reference_model.errors import ReferenceError_
    except ImportError as e:
        from reference_model.errors import TORCH_INSTALL

        raise Fatal(f"--dynamic needs the torch extra ({TORCH_INSTALL}): {e}") from None
    try:
        dynamic.run_for_results(args, targets, results, env_settings)
    except (SandboxUnavailable, ReferenceError_, ValueError, OSError) as e:
        raise Fatal(f"dynamic audit: {e}") from None


# --- report -----------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from reports.inputs import ReportInputError, load_inputs
    from reports.render import render_inputs

    try:
        inputs = load_inputs(args.results, args.source_root)
    except ReportInputError as e:
        raise Fatal(str(e)) from None
    try:
        report = render_inputs(inputs, args.output, title=args.title)
    except OSError as e:
        raise Fatal(f"cannot write the HTML report to {args.output}: {e.strerror or e}") from None
    parts = [f"{report.submissions} submission{'s' if report.submissions != 1 else ''}",
             f"{report.references} reference run{'s' if report.references != 1 else ''}",
             f"{report.rules} rules"]
    reason = f"wrote {len(report.pages)} pages to {args.output} ({', '.join(parts)})"
    if report.missing_sources:
        n = len(report.missing_sources)
        reason += (f"; source not found for {n} file{'s' if n != 1 else ''} "
                   f"({report.missing_sources[0]}{' ...' if n > 1 else ''}): pass --source-root")
    stdout(f"{Path(args.output) / 'index.html'}\n")
    last_line(EXIT_OK, reason)
    return EXIT_OK


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            last_line(EXIT_ERROR, "usage error: a command is required (audit, rules, ...)")
            return EXIT_ERROR
        code = args.func(args)
        return int(code or 0)
    except UsageError as e:
        if e.usage:
            try:
                sys.stderr.write(e.usage)
            except OSError:
                pass
        last_line(EXIT_ERROR, f"usage error: {e}")
        return EXIT_ERROR
    except Fatal as e:
        last_line(EXIT_ERROR, str(e))
        return EXIT_ERROR
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        last_line(EXIT_ERROR, "interrupted")
        return EXIT_ERROR
    except BaseException as e:  # never a traceback: one line, exit 2
        last_line(EXIT_ERROR, f"internal error: {type(e).__name__}: {e}")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
