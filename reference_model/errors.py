"""One-line, exit-coded errors for bad input, so the CLI never shows a traceback.

Exit codes (0 success, 1 findings and 2 usage belong to the main CLI):

    3  MissingPathError        a data folder, shard, tokenizer or input file does not exist
    4  ShardFormatError        a shard is corrupt, truncated, or has the wrong magic/version
    5  TokenizerMismatchError  the tokenizer's vocabulary does not match the model or the data
    6  InputError              malformed documents, JSONL or option values
    7  DependencyError         torch, sentencepiece or another needed package is missing
"""

from __future__ import annotations


class ReferenceError_(Exception):
    """Base class: ``str(err)`` is the one-line message, ``err.exit_code`` the process exit code."""

    exit_code = 6

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class MissingPathError(ReferenceError_):
    exit_code = 3


class ShardFormatError(ReferenceError_):
    exit_code = 4


class TokenizerMismatchError(ReferenceError_):
    exit_code = 5


class InputError(ReferenceError_):
    exit_code = 6


class DependencyError(ReferenceError_):
    exit_code = 7


# The torch extra with the CPU wheel pinned (an open range pulls a multi-GB CUDA build); the README says the same.
TORCH_INSTALL = "pip install torch==2.13.0 'scorefirst[torch]' (from a checkout: pip install torch==2.13.0 -e '.[torch]')"


def require(module: str, purpose: str):
    """Import ``module`` or raise DependencyError naming what it is needed for."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(f"{module} is required for {purpose} and cannot be imported ({exc}); install the "
                              f"torch extra: {TORCH_INSTALL}") from None
