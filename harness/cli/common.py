"""What every subcommand's parser shares: exit codes, the one-line error types, argument types, and the two
output channels (stdout for the result, the last stderr line for the reason)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


class UsageError(Exception):
    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """argparse that ends with our one-line reason instead of exiting on its own terms."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", self.format_usage())


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def from_cwd(path: Path) -> str:
    """`path` as it resolves from the current directory: relative when below it, else absolute."""
    rel = os.path.relpath(path)
    return (rel if not rel.startswith("..") else str(path)).replace(os.sep, "/")


class Fatal(Exception):
    """A one-line error that ends the run with exit 2."""


def stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop writing quietly; point stdout at devnull so the interpreter's
        # final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def last_line(code: int, reason: str) -> None:
    reason = " ".join(reason.split())
    try:
        print(f"scorefirst: exit {code}: {reason}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass
