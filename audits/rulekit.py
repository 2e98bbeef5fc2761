"""Helpers shared by the ordering-based rules (PG-TTT-001/002/003/004/006, PG-NG-003)."""
from __future__ import annotations

from typing import Callable, Iterator

from audits.evidence import merge_related, trail
from audits.ordering import Ordering, analyze
from audits.rule import Context, Hit


def ordering_hits(ctx: Context, kind: str, message: Callable[[Ordering], str]) -> Iterator[Hit]:
    """One hit per ordering of this kind, with the trail from the validation data to the flagged event."""
    for flow in ctx.flows:
        for o in analyze(flow):
            if o.kind == kind:
                related = merge_related(o.related, trail(ctx.prog, o.update or o.score))
                yield Hit(None, message(o), line=o.line, related=related)
