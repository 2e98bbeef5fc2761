"""PG-PPM-001: byte-level PPM mixtures scored on the realized byte stream."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    eval_functions,
    names_in,
    walk,
)

_PPM = re.compile(r"ppm|byte_model|p_byte|byte_p|bytewise", re.I)


def _prob_names(node: cst.CSTNode) -> set[str]:
    """Variable names in an expression, without ALL-CAPS constants such as `PPM_LAMBDA`."""
    return {x for x in names_in(node) if not x.isupper()}


def _weights(side: cst.CSTNode) -> set[str]:
    """Names multiplying a term: `lam * p` -> {lam}; `(1 - lam) * p` -> {lam} through the complement."""
    if type(side) is not cst.BinaryOperation or type(side.operator) is not cst.Multiply:
        return set()
    out = set()
    for f in (side.left, side.right):
        if type(f) is cst.Name:
            out.add(f.value)
        elif type(f) is cst.BinaryOperation and type(f.operator) is cst.Subtract and \
                type(f.left) in (cst.Integer, cst.Float) and type(f.right) is cst.Name:
            out.add("1-" + f.right.value)
    return out


def _convex(n: cst.BinaryOperation) -> bool:
    """`lam * a + (1 - lam) * b`: a mixture of two probabilities (in a function that computes the byte model's,
    such as a numpy helper `ppm_mixture_bpb` run over stored per-token log-probs)."""
    left, right = _weights(n.left), _weights(n.right)
    return any(f"1-{w}" in right for w in left) or any(f"1-{w}" in left for w in right)


class BytePPMMixture(Rule):
    """Flags mixing the network's probability with a byte-level model's probability of the realized byte.

    What it flags:
        In evaluation code, an expression that adds a PPM/byte-model probability to the model's probability
        (`lam * p_nn + (1 - lam) * p_ppm`), typically after spreading the token probability over bytes
        (`p ** (1 / n_bytes)`).

    Why it is illegal:
        The byte model scores only the byte that occurred; no full normalized distribution over possible next
        symbols is committed before the target is known (C2).

    Example:
        p_byte_nn = p_tok ** (1.0 / n_bytes)
        p_mix = lam * p_byte_nn + (1 - lam) * ppm.prob(ctx, byte)

    Use instead:
        Mix full next-token distributions over the official vocabulary, then score the realized token.
    """

    id = "PG-PPM-001"
    name = "byte-ppm-mixture"
    conditions = (Condition.C2,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Mixes in a byte-level model's probability of the realized byte"
    ruling = Ruling(
        "cocohearts (Alex Zhao)",
        "PR #2083 (same on #1991, #2076, #2080, #2098, #2103); Issue #1872",
        "it does not define and commit a full normalized distribution over possible next symbols before the "
        "target is known. That fails the C2/full-normalization audit",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            p = torch.softmax(model(val_tokens[:-1]), -1)
            loss_sum += -torch.log(p.gather(-1, val_tokens[1:, None])).sum()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, ppm):
            loss_sum = 0.0
            p_tok = torch.softmax(model(val_tokens[:-1]), -1).gather(-1, val_tokens[1:, None])
            for b, n in byte_stream(val_tokens):
                p_nn = p_tok[b] ** (1.0 / n)
                p_mix = 0.7 * p_nn + 0.3 * ppm.prob(b)
                loss_sum += -math.log2(p_mix)
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, ppm))
    """, line=6)]

    def check(self, ctx):
        prog = ctx.prog
        for q in sorted(eval_functions(ctx)):
            func = prog.funcs[q]
            for stmt in func.body:
                for n in walk(stmt):
                    if type(n) is cst.BinaryOperation and type(n.operator) is cst.Add:
                        left, right = _prob_names(n.left), _prob_names(n.right)
                        lp, rp = any(_PPM.search(x) for x in left), any(_PPM.search(x) for x in right)
                        if (lp and right and not rp) or (rp and left and not lp) or (
                                _PPM.search(func.name) and _convex(n)):
                            yield Hit(n, "mixes a byte-level model's probability of the realized byte into the "
                                         "scored probability")
                            break
