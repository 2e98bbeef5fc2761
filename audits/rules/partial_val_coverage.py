"""PG-DATA-005: a reported score that does not cover the whole validation split, or not in its bytes."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    SCORE,
    VAL,
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    dotted,
    names_in,
    walk,
)

_RANDOM_PICK = frozenset({"sample", "choice", "choices", "randperm", "permutation", "randint", "shuffle"})
_CONST_DENOMINATOR = re.compile(r"^(bytes_per_tok(en)?s?|tokens?_per_byte|avg_bytes_per_tok(en)?|bpt|tpb|"
                                r"BYTES_PER_TOK(EN)?|TOKENS?_PER_BYTE|AVG_BYTES_PER_TOK(EN)?)$")
_BPB_TARGET = re.compile(r"(bpb|bits_per_byte)", re.I)


def _random_pick(node: cst.CSTNode) -> bool:
    for n in walk(node):
        if type(n) is cst.Call:
            fn = dotted(n.func)
            if P.last_part(fn) in _RANDOM_PICK and ("random" in fn or fn.startswith(("torch.", "np.", "rng.", "g."))
                                                   or fn in _RANDOM_PICK):
                return True
    return False


def _constant(prog, name: str) -> bool:
    """Bound to one number (a literal, a configuration value): not computed from the counts of the scored run
    (`tokens_per_byte = token_count / byte_count` is the right denominator)."""
    v = prog.config.lookup(name).value
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class PartialValCoverage(Rule):
    """Flags a bits-per-byte score computed over a random subset of validation batches, or divided by a constant
    bytes-per-token figure instead of the bytes of the tokens scored.

    What it flags:
        A loop that scores validation tokens while iterating over a random pick of windows or batches
        (`random.sample`, `torch.randperm(n)[:k]`, `np.random.choice`), and a reported `*_bpb` whose denominator
        is a bytes-per-token constant (`BYTES_PER_TOKEN`, `tokens_per_byte`) rather than bytes counted per token.

    Why it is illegal:
        The score must cover the fixed first-50k-document split, every token once, measured in its own bytes.
        A sample of batches and an average bytes-per-token figure both report a number for text that was not
        scored as it is (#2009: "20 random validation minibatches plus a fixed BYTES_PER_TOKEN denominator").

    Example:
        for i in random.sample(range(n_batches), 20):
            loss_sum += eval_batch(model, val_tokens, i)
        val_bpb = val_loss / math.log(2) / BYTES_PER_TOKEN

    Use instead:
        Score every window of the split once and divide by the bytes of the scored tokens from the tokenizer's
        byte table (`base_bytes_lut[tgt] + leading-space bytes`).
    """

    id = "PG-DATA-005"
    name = "partial-val-coverage"
    conditions = (Condition.DATA,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Reported score does not cover the whole validation split in its own bytes"
    ruling = Ruling(
        "0hq; valerio-oai; cocohearts",
        "PR #50 (tail window), #1835 (subset=3000000), #2009, #2109",
        "Scoring must cover the full fixed first-50k-doc split",
        "maintainer rulings (summarized)",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens, base_bytes_lut):
            loss_sum, byte_count = 0.0, 0.0
            for i in range(len(val_tokens) // 1024):
                x = val_tokens[i * 1024:(i + 1) * 1024]
                loss_sum += model.nll(x).sum()
                byte_count += base_bytes_lut[x].sum()
            val_bpb = loss_sum / math.log(2) / byte_count
            return val_bpb
        print(f"val_bpb:{eval_val(model, val_tokens, base_bytes_lut)}")
    """), Valid("""
        def eval_val(model, val_tokens, base_bytes_lut):
            loss, token_count, byte_count = model.score_all(val_tokens, base_bytes_lut)
            tokens_per_byte = token_count / byte_count
            val_bpb = loss / math.log(2) * tokens_per_byte
            return val_bpb
        print(f"val_bpb:{eval_val(model, val_tokens, base_bytes_lut)}")
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, n_batches):
            loss_sum = 0.0
            for i in random.sample(range(n_batches), 20):
                x = val_tokens[i * 1024:(i + 1) * 1024]
                loss_sum += model.nll(x).sum()
            val_loss = loss_sum / (20 * 1024)
            return val_loss
        print(f"val_loss:{eval_val(model, val_tokens, 100)}")
    """, line=3), Invalid("""
        BYTES_PER_TOKEN = 2.436
        def eval_val(model, val_tokens):
            val_loss = model.mean_nll(val_tokens)
            val_bpb = val_loss / math.log(2) / BYTES_PER_TOKEN
            return val_bpb
        print(f"val_bpb:{eval_val(model, val_tokens)}")
    """, line=4)]

    def check(self, ctx):
        prog = ctx.prog
        seen: set[int] = set()
        for flow in ctx.flows:
            for uid, (loop, _path, _chain) in flow.loops.items():
                if uid in seen or type(loop.node) is not cst.For or not _random_pick(loop.node.iter):
                    continue
                if any(o.kind == SCORE and VAL in o.taint and any(lp.uid == uid for lp in o.loops) for o in flow.occs):
                    seen.add(uid)
                    yield Hit(loop.node, "scores validation tokens over a random pick of windows/batches, not the "
                                         "whole split", line=prog.line(loop.node))
        for n in prog.nodes_of(cst.Assign, cst.AugAssign):
            targets = [t.target for t in n.targets] if type(n) is cst.Assign else [n.target]
            if not any(_BPB_TARGET.search(dotted(t) or "") for t in targets):
                continue
            for b in walk(n.value):
                if type(b) is cst.BinaryOperation and type(b.operator) is cst.Divide and \
                        any(_CONST_DENOMINATOR.match(x) and _constant(prog, x) for x in names_in(b.right)):
                    yield Hit(n, "divides by a constant bytes-per-token figure instead of the bytes of the tokens "
                                 "scored")
                    break
                if type(b) is cst.BinaryOperation and type(b.operator) is cst.Multiply and \
                        any(_CONST_DENOMINATOR.match(x) and "per_byte" in x.lower() and _constant(prog, x)
                            for x in names_in(b)):
                    yield Hit(n, "multiplies by a constant tokens-per-byte figure instead of counting the bytes of the "
                                 "tokens scored")
                    break
