"""PG-TTT-001: training on validation tokens before they are scored."""
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


class PreEvalTTT(Rule):
    """Flags an optimizer step on validation tokens that have not been scored yet, when those tokens are scored later.

    What it flags:
        An update (`optimizer.step()` or a manual in-place parameter update) whose gradient comes from
        validation tokens, with no score of those tokens before it and a score of them after it — the
        "pre-eval TTT" shape: `ttt_adapt(..., val_tokens)` followed by `eval_val_sliding(..., val_tokens)`.

    Why it is illegal:
        The score of a token must come from a state that never trained on it (C3). Training first and scoring
        after adds the validation set to the training data, with or without a causal mask, and for one epoch
        as much as for ten.

    Example:
        for epoch in range(args.ttt_epochs):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward(); opt.step()        # trains on tokens not yet scored
        val_loss = eval_val(model, val_tokens)

    Use instead:
        Score-first TTT: per chunk, score under `torch.inference_mode()` and add to the loss sum, then train on
        that already-scored chunk (PG-TTT-005).
    """

    id = "PG-TTT-001"
    name = "pre-eval-ttt"
    conditions = (Condition.C3,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Trains on validation tokens before scoring them"
    ruling = Ruling(
        "0hq (Will DePue); valerio-oai",
        "PR #152; PR #462 (also #417, #442, #486, #555, #581, #595)",
        "You can't train on the validation tokens before you evaluate on those same tokens. It doesn't matter if "
        "you causal mask, you basically just added the val set to your training dataset.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_ttt(model, opt, val_tokens, n):
            loss_sum = 0.0
            for ci in range(n):
                chunk = val_tokens[ci * 64:(ci + 1) * 64]
                with torch.inference_mode():
                    loss_sum += model(chunk[:-1], chunk[1:]).item()
                loss = model(chunk[:-1], chunk[1:])
                loss.backward()
                opt.step()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_ttt(model, opt, val_tokens, 8))
    """)]
    INVALID = [Invalid("""
        def ttt_adapt(model, opt, val_tokens):
            for epoch in range(3):
                loss = model(val_tokens[:-1], val_tokens[1:])
                loss.backward()
                opt.step()
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        ttt_adapt(model, opt, val_tokens)
        print(eval_val(model, val_tokens))
    """, line=5)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "pre_eval", lambda o: (
            "optimizer step trains on validation tokens that are scored only later (train-then-score)"))
