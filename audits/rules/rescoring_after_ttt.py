"""PG-TTT-004: scoring tokens, training on them, then scoring them again and reporting the second score."""
from __future__ import annotations

from audits.rulekit import (
    Condition,
    Confidence,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    ordering_hits,
)


class RescoringAfterTTT(Rule):
    """Flags a second scoring of validation tokens after the model trained on them.

    What it flags:
        Tokens scored (s0), then used for an optimizer step, then scored again (s1) — inside one chunk iteration
        or across whole passes (`eval_val` → `ttt_adapt` → `eval_val`). The finding sits on the second scoring.

    Why it is illegal:
        Only s0 is a score of an unseen token. Reporting s1 (or calibrating a temperature on re-scored tokens)
        reports a state that already trained on the answers (C4: single pass).

    Example:
        s0 = eval_val(model, val_tokens)
        ttt_adapt(model, val_tokens)
        s1 = eval_val(model, val_tokens)      # reported

    Use instead:
        Report the cumulative s0 of score-first TTT, as the resubmission #1004 did.
    """

    id = "PG-TTT-004"
    name = "rescoring-after-ttt"
    conditions = (Condition.C4,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Re-scores validation tokens after training on them"
    ruling = Ruling(
        "valerio-oai",
        "PR #991 (resubmitted as #1004)",
        "you're scoring eval tokens (yielding some score s_0) -> training on them -> scoring them again (yielding "
        "some s_1) and then reporting s_1",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        pre = eval_val(model, val_tokens)
        blob = quantize(model)
        post = eval_val(dequantize(blob), val_tokens)
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        def adapt(model, opt, val_tokens):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward()
            opt.step()
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        s0 = eval_val(model, val_tokens)
        adapt(model, opt, val_tokens)
        s1 = eval_val(model, val_tokens)
        print(f"val_loss:{s1}")
    """, line=13)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "rescore", lambda o: (
            "scores validation tokens again after an optimizer step trained on them (s1 after s0)"))
