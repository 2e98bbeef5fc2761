"""PG-ATTN-001: attention that is not causal when the model scores."""
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
    branch_value,
    dotted,
    func_nodes_of,
)

_ATTENTION_CALLS = frozenset({"scaled_dot_product_attention", "flash_attn_func", "flash_attn_varlen_func",
                              "flash_attn_qkvpacked_func", "flash_attn_3_func", "flex_attention",
                              "memory_efficient_attention", "sdpa"})
_CAUSAL_KEYS = frozenset({"is_causal", "causal"})
_MASK_KEYS = frozenset({"attn_mask", "mask", "attn_bias", "block_mask", "cu_seqlens_q", "window_size"})


def _false(prog, node: cst.BaseExpression) -> bool:
    """False literally or by a decided configuration value (`is_causal=args.causal_eval` with its default 0)."""
    if type(node) is cst.Name and node.value == "False":
        return True
    v = branch_value(prog, node).value
    return v is False or (type(v) is int and v == 0)


class NoncausalAttention(Rule):
    """Flags attention switched to non-causal where nothing else masks the future.

    What it flags:
        An attention call (`F.scaled_dot_product_attention`, `flash_attn_func`, ...) given `is_causal=False` /
        `causal=False` (literally or by a configuration value) and no mask argument; and a module attribute
        named `causal`/`is_causal` set to False on a model object from outside its class (`model.causal = False`
        before evaluation).

    Why it is illegal:
        Position t then attends to positions after t, including the token it is scored on: its distribution is a
        function of future tokens (C1). Training that is causal does not make a non-causal evaluation legal.

    Example:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)

    Use instead:
        `is_causal=True`, or an explicit causal (or block-causal document) mask passed as `attn_mask`.
    """

    id = "PG-ATTN-001"
    name = "noncausal-attention"
    conditions = (Condition.C1,)
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Attention is not causal when the model scores"
    ruling = Ruling(
        "README (official); C1 as adopted by the maintainers (cocohearts cites C1 in leaderboard audits)",
        "README FAQ; Issue #1017 (C1 definition)",
        "At position t, the predictive distribution p_t(·) must be a function only of the submitted artifact A and "
        "the strict prefix x_1…x_{t−1} … It may not depend on x_t or any future token",
        "rule text",
    )
    VALID = [Valid("""
        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        def attend_docs(q, k, v, doc_mask):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=doc_mask, is_causal=False)
        y = attend(q, k, v) + attend_docs(q, k, v, doc_mask)
    """)]
    INVALID = [Invalid("""
        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=False)
        y = attend(q, k, v)
    """, line=2), Invalid("""
        def evaluate(model, tokens):
            for block in model.blocks:
                block.attn.causal = False
            return model(tokens)
        val_loss = evaluate(model, val_tokens)
    """, line=3)]

    def check(self, ctx):
        prog = ctx.prog
        for func in prog.funcs.values():
            for call in func_nodes_of(func, cst.Call):
                if P.last_part(dotted(call.func)) not in _ATTENTION_CALLS:
                    continue
                keys = {a.keyword.value for a in call.args if a.keyword is not None}
                if keys & _MASK_KEYS:
                    continue
                for a in call.args:
                    if a.keyword is not None and a.keyword.value in _CAUSAL_KEYS and _false(prog, a.value):
                        yield Hit(call, f"`{P.last_part(dotted(call.func))}` runs with `{a.keyword.value}` off and no "
                                        "mask: every position attends to the tokens after it")
            if func.cls is not None:
                continue  # a class configuring its own attention is read through its calls above
            for n in func_nodes_of(func, cst.Assign):
                for t in n.targets:
                    target = t.target
                    if type(target) is cst.Attribute and target.attr.value in _CAUSAL_KEYS and _false(prog, n.value) \
                            and not (type(target.value) is cst.Name and target.value.value in ("self", "cls")):
                        yield Hit(n, f"`{prog.node_text(target)}` is switched off on the model from outside it: "
                                     "attention then sees the tokens after each position")
