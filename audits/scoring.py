"""Which functions score validation tokens, and which names feed the reported NLL (not the byte count).

Cache, gate and mixture rules (PG-NG-*, PG-PPM-001) only care about expressions that reach the loss being
reported; byte-count tables indexed by the target (`has_leading_space_lut[tgt]`) are legal accounting.
"""
from __future__ import annotations

import libcst as cst

from audits import patterns as P
from audits.flow import VAL
from audits.functions import Func, func_nodes_of
from audits.program import Program
from audits.syntax import assignment_edges, backward_closure, names_in, root_name
from audits.rule import Context


def scoring_roots(ctx: Context) -> set[str]:
    """Functions that accumulate the validation score themselves and do not also train on training data."""
    from audits.flow import TRAIN, UPDATE

    scoring = {o.ev.func.qname for flow in ctx.flows for o in flow.val_scores()} - {"<module>"}
    training = {o.ev.func.qname for flow in ctx.flows for o in flow.occs if o.kind == UPDATE and TRAIN in o.taint}
    return scoring - training


def eval_functions(ctx: Context) -> set[str]:
    """Functions that hold a validation score, plus every script function they call (transitively)."""
    cache = ctx.memo.get("eval_funcs")
    if cache is not None:
        return cache
    roots = {o.ev.func.qname for flow in ctx.flows for o in flow.val_scores()} - {"<module>"}
    out = set(roots)
    todo = list(roots)
    while todo:
        f = ctx.prog.funcs[todo.pop()]
        for n in func_nodes_of(f, cst.Call):
            callee = ctx.prog.resolve_call(n, f)
            if callee is not None and callee.qname not in out and callee.qname != "<module>":
                out.add(callee.qname)
                todo.append(callee.qname)
    ctx.memo["eval_funcs"] = out
    return out


def nll_sources(prog: Program, func: Func) -> set[str]:
    """Names whose value flows into a loss accumulator, or into what a scoring helper returns."""
    cache = prog.memo.setdefault("nll_sources", {})
    if func.qname in cache:
        return cache[func.qname]
    seeds: set[str] = set()
    edges: list[tuple[set[str], set[str]]] = []
    for n in func_nodes_of(func, cst.Assign, cst.AugAssign, cst.Call, cst.Return):
        if type(n) in (cst.Assign, cst.AugAssign) and n.value is not None:
            for targets, sources in assignment_edges(n):
                if type(n) is cst.AugAssign and any(is_loss_accumulator(t) for t in targets):
                    seeds |= sources
                if type(n) is cst.Assign:
                    for t in n.targets:
                        if type(t.target) is cst.Subscript and t.target.slice:
                            sources = sources | names_in(t.target.slice[0])
                edges.append((targets, sources))
        elif type(n) is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value.endswith("_"):
            # in-place tensor methods (`logits.scatter_add_(-1, hint, gate)`) write their arguments into the receiver
            target = root_name(n.func.value)
            sources = set().union(*(names_in(a.value) for a in n.args)) if n.args else set()
            if n.func.attr.value in ("add_", "copy_") and is_loss_accumulator(target):
                seeds |= sources
            edges.append(({target}, sources))
        elif type(n) is cst.Return and n.value is not None:
            seeds |= names_in(n.value)
    out = backward_closure(seeds, edges)
    cache[func.qname] = out
    return out


def is_loss_accumulator(name: str) -> bool:
    return bool(name) and bool(P.SCORE_ACC.search(name)) and not P.NOT_SCORE_ACC.search(name)


def statement_targets(stmt: cst.CSTNode) -> set[str]:
    if type(stmt) is cst.Assign:
        return {root_name(t.target) for t in stmt.targets}
    if type(stmt) in (cst.AugAssign, cst.AnnAssign):
        return {root_name(stmt.target)}
    return set()


def enclosing_statements(func: Func):
    """(small statement, node) pairs for every node of the function's own body."""
    for n in func_nodes_of(func, cst.SimpleStatementLine):
        yield from n.body


def reaches_nll(prog: Program, func: Func, small: cst.CSTNode) -> bool:
    """Does this statement write something the reported NLL is computed from?"""
    if type(small) in (cst.Return,):
        return True
    srcs = nll_sources(prog, func)
    targets = statement_targets(small)
    if targets & srcs:
        return True
    if type(small) is cst.AugAssign and is_loss_accumulator(root_name(small.target)):
        return True
    if type(small) is cst.Expr and type(small.value) is cst.Call and type(small.value.func) is cst.Attribute:
        return small.value.func.attr.value in ("add_", "copy_") and is_loss_accumulator(root_name(small.value.func.value))
    return False


__all__ = ["eval_functions", "nll_sources", "reaches_nll", "enclosing_statements", "VAL"]
