"""The checks of a token ledger, one module each, found by discovery: a :class:`LedgerCheck` subclass in a module of
this package is run by :func:`harness.checks.check_ledger` in its ``order``, and its ``id`` must have an entry in the
catalogue (``audits/specs/dynamic.py``), which ``tests/test_catalogue.py`` enforces. See ``base.py`` for the shared
pass and the facts a verdict reads."""

from __future__ import annotations

import importlib
import pkgutil

from harness.ledger_checks.base import LedgerCheck

_SHARED = ("base",)


def discover() -> list[type[LedgerCheck]]:
    """Every check class of the package, in verdict order."""
    for m in pkgutil.iter_modules(__path__):
        if m.name not in _SHARED:
            importlib.import_module(f"{__name__}.{m.name}")
    return sorted((c for c in LedgerCheck.__subclasses__() if c.id), key=lambda c: c.order)
