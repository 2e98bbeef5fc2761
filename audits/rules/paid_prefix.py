"""PG-DATA-002: validation tokens stored in the artifact and matched against the targets."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    TARGET,
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    func_nodes_of,
    names_in,
)

_STORED = re.compile(r"prefix|stored|paid|memo|blob|baked|cached_tok|lookup_tok|answer", re.I)


class PaidPrefix(Rule):
    """Flags comparing tokens stored in the artifact with the targets being scored ("paid prefix").

    What it flags:
        `match_mask = (prefix_slice == tgt_slice)` and similar equality tests between a stored token blob and
        the realized targets, used to give probability 1 where the stored token matches.

    Why it is illegal:
        It compresses the validation set into the 16 MB artifact; "you have to train and load as if you have no
        access to val" (C1: the prediction depends on external knowledge of the target).

    Example:
        prefix = decode_blob("prefix_optimal.xz")
        match_mask = (prefix[pos:pos + n] == tgt)

    Use instead:
        Nothing derived from validation tokens may be stored in the artifact.
    """

    id = "PG-DATA-002"
    name = "paid-prefix"
    conditions = (Condition.C1,)
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Matches stored validation tokens against the targets"
    ruling = Ruling(
        "0hq (Will DePue); cocohearts (Alex Zhao); README",
        "PR #168; PR #262; PR #275",
        "You CANNOT access validation data during training, e.g. by compressing it into your 16mb with 'paid "
        "prefix'.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            x, tgt = val_tokens[:-1], val_tokens[1:]
            acc = (model(x).argmax(-1) == tgt).float().mean()
            return acc
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, prefix):
            x, tgt = val_tokens[:-1], val_tokens[1:]
            match_mask = (prefix[:len(tgt)] == tgt)
            return match_mask
        print(eval_val(model, val_tokens, prefix))
    """, line=3)]

    def check(self, ctx):
        prog = ctx.prog
        for func in prog.funcs.values():
            for n in func_nodes_of(func, cst.Comparison):
                if len(n.comparisons) == 1 and type(n.comparisons[0].operator) is cst.Equal:
                    sides = (n.left, n.comparisons[0].comparator)
                    for a, b in (sides, sides[::-1]):
                        if any(_STORED.search(x) for x in names_in(a)) and TARGET in prog.expr_taint(b, func):
                            yield Hit(n, "compares tokens stored in the artifact with the targets being scored")
                            break
