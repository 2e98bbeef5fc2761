"""Helpers shared by the ordering-based rules (PG-TTT-001/002/003/004/006, PG-NG-003)."""
from __future__ import annotations

from typing import Callable, Iterator

from audits.ordering import Ordering, analyze
from audits.rule import Context, Hit


def ordering_hits(ctx: Context, kind: str, message: Callable[[Ordering], str]) -> Iterator[Hit]:
    for flow in ctx.flows:
        for o in analyze(flow):
            if o.kind == kind:
                yield Hit(None, message(o), line=o.line, related=o.related)
