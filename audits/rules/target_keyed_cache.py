"""PG-NG-001: n-gram/cache probabilities looked up with the target token, scored without normalization."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    TARGET,
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    enclosing_statements,
    eval_functions,
    reaches_nll,
    root_name,
    walk,
)

_READ_METHODS = ("get", "gather", "lookup", "query", "prob", "logprob", "logprob_target", "score", "index_select", "take")


class TargetKeyedCache(Rule):
    """Flags a cache/n-gram table read whose key is built from the target token, when that value is scored.

    What it flags:
        In evaluation code, a read of a count/hash/n-gram table (`table[key]`, `.get(key)`, `.gather(1, gold)`,
        `ngram.logprob_target(ctx, tgt)`) whose index is derived from the realized target, where the value
        reaches the reported NLL. The target inside a key during a cache *update* (`counts[full_key] += 1`) is
        fine and not flagged.

    Why it is illegal:
        The mixture is computed only at the gold token, so it is not a distribution over the vocabulary: it
        "looks ahead to the target token to mix probabilities" and does not renormalize (#886: sums to ~277).
        C2 requires a full normalized distribution committed before the target is seen.

    Example:
        full_key = (ctx_hash ^ (y * primes[n])) & mask
        p_ng = full_counts[full_key] / ctx_counts[ctx_key]
        nll = -log((1 - a) * p_nn_gold + a * p_ng)

    Use instead:
        Compute the n-gram distribution for every vocabulary entry from the prefix, mix it with the model's full
        softmax, and only then read the target's probability (PG-NG-005).
    """

    id = "PG-NG-001"
    name = "target-keyed-cache"
    conditions = (Condition.C2,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Scores a cache probability looked up with the target token"
    ruling = Ruling(
        "valerio-oai",
        "~30 PRs closed 2026-03-27 (#688 … #982); #779, #1026, #1185, #993",
        "disallowed due to the use of hashed n-gram caches, which do not renormalize correctly / correctly reweight "
        "the LM's token distribution, look ahead to the target token to mix probabilities and therefore leak eval "
        "tokens.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens, ngram_counts):
            loss_sum = 0.0
            x, y = val_tokens[:-1], val_tokens[1:]
            p_nn = torch.softmax(model(x), -1)
            p_ng = ngram_counts[ctx_key(x)]
            p_ng = p_ng / p_ng.sum(-1, keepdim=True)
            mixed = 0.9 * p_nn + 0.1 * p_ng
            loss_sum += -torch.log(mixed.gather(-1, y[:, None])).sum()
            ngram_counts[ctx_key(x), y] += 1
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, ngram_counts))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, full_counts, ctx_counts):
            loss_sum = 0.0
            x, y = val_tokens[:-1], val_tokens[1:]
            p_gold = torch.softmax(model(x), -1).gather(-1, y[:, None])
            full_key = (ctx_hash(x) ^ (y * 1000003)) & 4095
            p_ng = full_counts[full_key] / ctx_counts[ctx_hash(x) & 4095]
            loss_sum += -torch.log(0.9 * p_gold + 0.1 * p_ng).sum()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, full_counts, ctx_counts))
    """, line=6)]

    def check(self, ctx):
        prog = ctx.prog
        for q in sorted(eval_functions(ctx)):
            func = prog.funcs[q]
            if "ppm" in q.lower():
                continue  # byte-level PPM models are PG-PPM-001's subject
            for small in enclosing_statements(func):
                if type(small) is cst.AugAssign and not _is_loss_target(small):
                    continue  # a count update, not a read
                read = self._target_read(prog, func, small)
                if read is not None and reaches_nll(prog, func, small):
                    yield Hit(read, "cache/n-gram value read with a key built from the target token reaches the "
                                    "scored NLL; the mixture is not a normalized distribution over the vocabulary")

    def _target_read(self, prog, func, small):
        value = getattr(small, "value", None)
        if value is None:
            return None
        for n in walk(value):
            if type(n) is cst.Subscript and _cache_table(root_name(n.value)):
                if any(TARGET in prog.expr_taint(s.slice, func) for s in n.slice):
                    return n
            elif type(n) is cst.Call and type(n.func) is cst.Attribute:
                recv = root_name(n.func.value)
                if (n.func.attr.value in _READ_METHODS or "target" in n.func.attr.value) and \
                        _cache_table(recv) and not (n.func.attr.value == "gather" and _DISTRIBUTION.search(recv)) and \
                        any(TARGET in prog.expr_taint(a.value, func) for a in n.args):
                    return n
        return None


# `p_cache.gather(-1, y)`: reading the target's probability from a distribution is how every scorer scores; the
# counts of `pair_c.gather(1, gold)` (#972) are not a distribution.
_DISTRIBUTION = re.compile(r"^(p|probs?|dist|lp|logp|log_p)(_|$)|prob|dist", re.I)


def _cache_table(name: str | None) -> bool:
    """A count/hash table; byte-level PPM models are PG-PPM-001's subject."""
    return bool(name) and bool(P.CACHE_TABLE.search(name)) and "ppm" not in name.lower()


def _is_loss_target(small: cst.AugAssign) -> bool:
    from audits.scoring import is_loss_accumulator

    return is_loss_accumulator(root_name(small.target))
