"""PG-NG-004: gates or experts switched by properties of the realized target token."""
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
    eval_functions,
    nll_sources,
    root_name,
    statement_targets,
    walk,
)

_LUT = re.compile(r"(lut|LUT|_table|is_boundary|boundary|new_word|word_start|starts_|is_word|tok_class|class_of)")
_BYTE_ACCOUNTING = re.compile(r"(byte|bytes|leading_space|has_space|base_len)", re.I)


class TargetClassGate(Rule):
    """Flags a lookup table indexed by the current target token that gates a hint for that same position.

    What it flags:
        `is_boundary = boundary_lut[tok]` / `starts_new_word_lut[tgt]` where the token is the one being scored,
        used to switch an expert, gate or mixing weight whose output reaches the reported NLL. Tables used for
        byte accounting (`has_leading_space_lut[tgt]`) are legal and not flagged.

    Why it is illegal:
        The gate depends on the class of the token it is predicting, so the distribution is not a function of
        the prefix alone (C1). cocohearts' audit required `within_gate=0 word_gate=0 agree2plus=0`.

    Example:
        within = ~boundary_lut[tgt] & ~new_word_lut[tgt]
        p = torch.where(within, p_within_expert, p)

    Use instead:
        Condition gates on the prefix (previous tokens) only, as the merged #1514 and #2135 do.
    """

    id = "PG-NG-004"
    name = "target-class-gate"
    conditions = (Condition.C1,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Gates a prediction on the class of the token being predicted"
    ruling = Ruling(
        "cocohearts (Alex Zhao)",
        "PR #2041 (same finding on #2118)",
        "Those gates depend on current target-token class/word information … A token-only legal path should have "
        "those gates disabled/zero.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens, has_leading_space_lut):
            loss_sum = 0.0
            byte_count = 0
            x, tgt = val_tokens[:-1], val_tokens[1:]
            loss_sum += F.cross_entropy(model(x), tgt, reduction="sum")
            byte_count += has_leading_space_lut[tgt].sum()
            return loss_sum, byte_count
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, lut))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, boundary_lut, expert):
            loss_sum = 0.0
            x, tgt = val_tokens[:-1], val_tokens[1:]
            p = torch.softmax(model(x), -1)
            within = ~boundary_lut[tgt]
            p = torch.where(within[:, None], expert(x), p)
            loss_sum += -torch.log(p.gather(-1, tgt[:, None])).sum()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, lut, expert))
    """, line=5)]

    def check(self, ctx):
        prog = ctx.prog
        for q in sorted(eval_functions(ctx)):
            func = prog.funcs[q]
            srcs = nll_sources(prog, func)
            for stmt in func.body:
                for n in walk(stmt):
                    if type(n) is not cst.Assign:
                        continue
                    targets = statement_targets(n)
                    if not targets & srcs or any(_BYTE_ACCOUNTING.search(t) for t in targets if t):
                        continue
                    for sub in walk(n.value):
                        if type(sub) is cst.Subscript:
                            table = root_name(sub.value) or ""
                            if _LUT.search(table) and not _BYTE_ACCOUNTING.search(table) and \
                                    any(TARGET in prog.expr_taint(s.slice, func) for s in sub.slice):
                                yield Hit(sub, f"`{table}` is indexed by the token being scored and gates the "
                                               "prediction for that same position")
                                break
