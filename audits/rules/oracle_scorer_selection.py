"""PG-NG-002: keeping whichever of two scorers gave the lower loss on the true token."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    analyze,
    dotted,
    eval_functions,
    names_in,
    nll_sources,
    root_name,
    statement_targets,
    walk,
)

_LOSSY = ("nll", "loss", "logp", "lp", "ce", "bits")


def _lossy(node: cst.CSTNode) -> bool:
    return any(any(k in n.lower() for k in _LOSSY) for n in names_in(node))


def _per_token_write(n: cst.Assign | cst.AugAssign, srcs: set[str]) -> bool:
    """`scored[t] = min(a[t], b[t])`: a per-position write of the smaller of two values into the scored buffer."""
    targets = [t.target for t in n.targets] if type(n) is cst.Assign else [n.target]
    return any(type(t) is cst.Subscript and (root_name(t) in srcs or "scored" in root_name(t)) for t in targets) \
        and all(type(a.value) is cst.Subscript for a in n.value.args)


class OracleScorerSelection(Rule):
    """Flags a per-token choice between two scorers made by comparing their losses on the realized token.

    What it flags:
        `if new_nll < old_nll: scored_nll[t] = new_nll`, `torch.minimum(nll_a, nll_b)`, `min(nll_cache, nll_lm)`
        or `torch.where(a < b, a, b)` feeding the scored buffer.

    Why it is illegal:
        The choice uses the ground-truth token to decide which scorer to report after the fact, so the reported
        probability is not from any distribution committed before the target was seen (C2).

    Example:
        if ngram_nll[t] < model_nll[t]:
            scored_nll[t] = ngram_nll[t]

    Use instead:
        Mix the scorers with weights fixed before the target is seen (from the prefix only), over the whole
        vocabulary.
    """

    id = "PG-NG-002"
    name = "oracle-scorer-selection"
    conditions = (Condition.C2,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Chooses between scorers by their loss on the true token"
    ruling = Ruling(
        "valerio-oai",
        "PR #659",
        "for every token, the code scores the token under both the 5-gram cache and the actual language model, and "
        "then keeps whichever gives the lower loss on the true next token … using the ground-truth answer to "
        "decide which scorer to report after the fact",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            nll = F.cross_entropy(model(val_tokens[:-1]), val_tokens[1:], reduction="none")
            loss_sum += nll.sum()
            if loss_sum < best_seen:
                print("new best")
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, cache):
            loss_sum = 0.0
            lm_nll = F.cross_entropy(model(val_tokens[:-1]), val_tokens[1:], reduction="none")
            cache_nll = cache.nll(val_tokens)
            scored_nll = lm_nll.clone()
            for t in range(len(lm_nll)):
                if cache_nll[t] < lm_nll[t]:
                    scored_nll[t] = cache_nll[t]
            loss_sum += scored_nll.sum()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, cache))
    """, line=7)]

    def check(self, ctx):
        prog = ctx.prog
        epoch_ranges = []
        for flow in ctx.flows:
            for o in analyze(flow):
                if o.kind == "epoch":
                    loop = next(lp for lp, *_ in flow.loops.values() if lp.line == o.line)
                    epoch_ranges.append((prog.line(loop.node), prog.end_line(loop.node)))
        for q in sorted(eval_functions(ctx)):
            func = prog.funcs[q]
            srcs = nll_sources(prog, func)
            for stmt in func.body:
                for n in walk(stmt):
                    line = None
                    if type(n) is cst.If and type(n.test) is cst.Comparison and len(n.test.comparisons) == 1:
                        op = n.test.comparisons[0].operator
                        if type(op) in (cst.LessThan, cst.GreaterThan, cst.LessThanEqual, cst.GreaterThanEqual) \
                                and _lossy(n.test.left) and _lossy(n.test.comparisons[0].comparator) \
                                and self._writes_scored(n, srcs):
                            line = prog.line(n)
                    elif type(n) in (cst.Assign, cst.AugAssign) and type(n.value) is cst.Call and \
                            P.last_part(dotted(n.value.func)) in ("minimum", "min", "fmin") and len(n.value.args) == 2 \
                            and not any(type(a.value) in (cst.Integer, cst.Float) for a in n.value.args) and (
                                all(_lossy(a.value) for a in n.value.args) or _per_token_write(n, srcs)):
                        line = prog.line(n)
                    if line is not None and not any(a <= line <= b for a, b in epoch_ranges):
                        yield Hit(n, "selects between two per-token losses using the true token, then reports the "
                                     "lower one", line=line)

    @staticmethod
    def _writes_scored(node: cst.If, srcs: set[str]) -> bool:
        for n in walk(node.body):
            if type(n) in (cst.Assign, cst.AugAssign) and statement_targets(n) & (srcs | {"scored_nll"}):
                return True
        return False
