"""`scorefirst report`: render the HTML report from stored results (reports/)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import EXIT_OK, Fatal, last_line, stdout


def add_parser(sub) -> None:
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
