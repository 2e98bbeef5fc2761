"""Everything a rule module needs, in one import: `from audits.rulekit import Rule, Hit, Valid, ...`.

A rule author reads the program model (names, functions, configuration, taint), the linearized run (events,
orderings) and the evidence helpers from here, and the metadata types; where each lives is a detail of the
analyzer. `ordering_hits` turns the orderings of one kind into hits with their evidence trail.
"""
from __future__ import annotations

from typing import Callable, Iterator

from audits import patterns as P
from audits.configuration import branch_value
from audits.consteval import evaluate
from audits.evidence import merge_related, trail
from audits.flow import (
    CACHE_UPDATE,
    CALIB,
    SCORE,
    TRAIN_READ,
    UPDATE,
    Occ,
    common_split,
    exclusive,
)
from audits.functions import func_nodes_of
from audits.ordering import Ordering, analyze
from audits.patterns import EXEC_FUNCS
from audits.rule import Context, Hit, Invalid, Rule, Valid
from audits.scoring import (
    enclosing_statements,
    eval_functions,
    nll_sources,
    reaches_nll,
    scoring_roots,
    statement_targets,
)
from audits.syntax import dotted, names_in, root_name
from audits.taint import TARGET, TRAIN, VAL
from audits.types import Condition, Confidence, Ruling, Severity
from audits.walk import walk

__all__ = [
    "P", "EXEC_FUNCS", "branch_value", "evaluate", "merge_related", "trail", "CACHE_UPDATE", "CALIB", "SCORE", "TRAIN_READ", "UPDATE",
    "Occ", "common_split", "exclusive", "func_nodes_of", "Ordering", "analyze", "Context", "Hit", "Invalid", "Rule",
    "Valid", "enclosing_statements", "eval_functions", "nll_sources", "reaches_nll", "scoring_roots",
    "statement_targets", "dotted", "names_in", "root_name", "TARGET", "TRAIN", "VAL", "Condition", "Confidence",
    "Ruling", "Severity", "walk", "ordering_hits",
]


def ordering_hits(ctx: Context, kind: str, message: Callable[[Ordering], str]) -> Iterator[Hit]:
    """One hit per ordering of this kind, with the trail from the validation data to the flagged event."""
    for flow in ctx.flows:
        for o in analyze(flow):
            if o.kind == kind:
                related = merge_related(o.related, trail(ctx.prog, o.update or o.score))
                yield Hit(None, message(o), line=o.line, related=related)
