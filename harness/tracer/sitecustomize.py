"""Loaded by Python at start-up in an audited script's process (see harness/tracer/__init__.py)."""

import os

if os.environ.get("SCOREFIRST_GUARD_LOG"):
    try:
        import scorefirst_guard

        scorefirst_guard.install()
    except Exception as exc:  # never break the audited script
        os.write(2, f"scorefirst guard not installed: {exc!r}\n".encode())

if os.environ.get("SCOREFIRST_TRACE"):
    try:
        import scorefirst_trace

        scorefirst_trace.install()
    except Exception as exc:
        os.write(2, f"scorefirst tracer not installed: {exc!r}\n".encode())
