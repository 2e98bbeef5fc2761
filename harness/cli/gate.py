"""`scorefirst gate`: parse the gate's arguments into `GateOptions` and run it (harness/gate/runner.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import EXIT_ERROR, UsageError, last_line, positive_int, stdout
from harness.cli.dynamic_args import add_dynamic_arguments, dynamic_options

GATE_EPILOG = """\
checks (one verdict per submission folder and check):
  legality      the static audit of every .py in the folder, under the README's run command; with --dynamic
                (a GPU runner) also the dynamic audit of its script, and any static/dynamic disagreement
  format        README.md, submission.json (schema: harness/schemas/submission.schema.json), train_gpt.py
                and logs present; the change touches nothing outside the folder
  logs          every seed's log parsed; logs tied to the submitted train_gpt.py; agree with submission.json;
                the BPB byte denominator recomputed from val_loss, val_bpb and the token count
  budgets       artifact = code + compressed model <= 16,000,000 B per seed; train <= 600 s incl.
                calibration; eval <= 600 s incl. TTT and precompute (no time cap on the non-record track)
  significance  >= 3 seeds of one config; against the record (--record-bpb, --record-logs, [record] in
                --config, or compared_to in submission.json): README policy and one-sided Welch, labelled

exit codes:
  0  every folder passes (warnings allowed), or the change adds no submission folder
  1  blocked: some check FAILs in some folder
  2  the gate could not judge: usage or config error, git failure, a file the audit could not read,
     an output that could not be written, or an internal error
The last line on stderr always says why, e.g. "scorefirst: exit 1: blocked: records/...: budgets FAIL".
"""


def add_parser(sub) -> None:
    gate = sub.add_parser(
        "gate", help="check the submission folders a change adds under records/ (legality, format, logs, budgets, "
                     "significance)",
        description="Find the folders that HEAD (or --head) adds or modifies under records/ relative to its merge "
                    "base with --base, read them from git (nothing is checked out or run), and give each a verdict "
                    "per check.",
        epilog=GATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    gate.add_argument("--repo", default=".", metavar="PATH", help="the competition repository (default: .)")
    gate.add_argument("--base", metavar="REF",
                      help="base branch or commit (default: origin/$GITHUB_BASE_REF, origin/main, main, ...)")
    gate.add_argument("--head", default="HEAD", metavar="REF", help="the change to check (default: HEAD)")
    rec = gate.add_mutually_exclusive_group()
    rec.add_argument("--record-bpb", metavar="X[,Y,...]",
                     help="the current record's val_bpb: one value or one per seed")
    rec.add_argument("--record-logs", metavar="DIR", help="a folder with the current record's train logs")
    gate.add_argument("--config", metavar="FILE",
                      help="a TOML (or .json) file: [record], [significance], [limits], [bytes], [tolerance], [tracks] "
                           "(see docs/gate.md); --record-bpb/--record-logs override its [record]")
    gate.add_argument("--format", default="concise", choices=["concise", "full", "json", "sarif", "github", "markdown"],
                      help="what to print on stdout (default: concise)")
    gate.add_argument("--json", metavar="FILE", help="also write the JSON result to FILE")
    gate.add_argument("--sarif", metavar="FILE", help="also write SARIF 2.1.0 to FILE (one run per folder)")
    gate.add_argument("--markdown", metavar="FILE", help="also write the Markdown summary (job summary, PR comment)")
    if _has_reports():
        gate.add_argument("--html", metavar="DIR",
                          help="also render the HTML report of the audited folders into DIR")
    gate.add_argument("--pr", type=positive_int, metavar="N", help="label the results with pull request N")
    gate.add_argument("--no-cache", action="store_true", help="do not read or write the audit's result cache")
    gate.add_argument("--jobs", type=positive_int, metavar="N", help="audit worker processes (default: all cores)")
    add_dynamic_arguments(gate)  # on a GPU runner: also run each folder's script sandboxed and traced
    gate.set_defaults(func=cmd_gate)


def _has_reports() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("reports.render") is not None
    except (ImportError, ValueError):
        return False


def cmd_gate(args: argparse.Namespace) -> int:
    from audits.api import tool_version
    from audits.cache import Cache, default_cache_dir
    from audits.outputs import write_atomic
    from harness.gate.config import ConfigError, GateConfig, load_config, parse_record_bpb
    from harness.gate.render import render
    from harness.gate.runner import GateOptions, run_gate

    try:
        cfg = load_config(args.config) if args.config else GateConfig()
        if args.record_bpb:
            cfg.record, cfg.record_logs = parse_record_bpb(args.record_bpb), None
        elif args.record_logs:
            cfg.record, cfg.record_logs = None, args.record_logs
    except ConfigError as e:
        raise UsageError(str(e)) from None
    cache = None if args.no_cache else Cache(default_cache_dir(), tool_version())
    opts = GateOptions(repo=Path(args.repo), base=args.base, head=args.head, config=cfg, pr=args.pr, jobs=args.jobs,
                       cache_dir=cache, html_dir=getattr(args, "html", None),
                       dynamic=dynamic_options(args))
    result = run_gate(opts)
    failures = []
    for fmt, dest in (("json", args.json), ("sarif", args.sarif), ("markdown", args.markdown)):
        if dest:
            try:
                write_atomic(dest, render(fmt, result))
            except OSError as e:
                failures.append(f"cannot write {dest}: {e.strerror or e}")
    stdout(render(args.format, result))
    code, reason = result.exit_code(), result.reason()
    if failures:
        code, reason = EXIT_ERROR, "; ".join(failures)
    last_line(code, reason)
    return code
