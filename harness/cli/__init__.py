"""The `scorefirst` command line (also `python -m harness`): one module per subcommand, parsing only.

Each module turns its arguments into typed options and calls the library (harness/run.py for `audit` and `gate`);
`common.py` holds the exit codes and the one-line error channel. The audit path imports libcst and the `audits`
package only: never torch, never the submission.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from core.version import __version__
from harness.cli import audit, gate, report, rules
from harness.cli.audit import EPILOG
from harness.cli.common import EXIT_ERROR, Fatal, Parser, UsageError, last_line, positive_int


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

    from harness.sweep.command import add_parser as add_sweep_parser

    for command in (audit, report, rules, gate):
        command.add_parser(sub)
    add_sweep_parser(sub, positive_int)

    try:
        from reference_model.commands import register
    except ImportError:
        pass
    else:
        register(sub)
    return parser


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
