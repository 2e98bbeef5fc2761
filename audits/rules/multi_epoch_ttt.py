"""PG-TTT-003: multi-epoch TTT that reports the last-epoch or best-epoch score of the same tokens."""
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


class MultiEpochTTT(Rule):
    """Flags an epoch/pass loop that both scores tokens and trains on them, so later passes re-score trained tokens.

    What it flags:
        A repeat loop (`for epoch in range(args.ttt_epochs)`, `while ep < n`, `itertools.repeat`, a loop that
        ignores its variable) enclosing both a score accumulation and an optimizer step on the same document or
        chunk. Evidence strengthens when the per-document accumulator is reset inside the loop, the reported
        sum is written after it, or the best pass is selected (`min(`, `best_*`).

    Why it is illegal:
        From the second pass on, every score comes from weights that already trained on those very tokens. The
        reported number is the last (or lowest) pass — equivalent to training on the validation set (C4: each
        token scored once; C3).

    Example:
        for epoch in range(args.ttt_epochs):
            doc_loss.zero_()                    # "score every epoch … overwritten each epoch"
            ptl = model(x, y, lora=lora)
            doc_loss += ptl.sum()
            ptl.sum().backward(); opt.step()
        loss_sum += doc_loss

    Use instead:
        Score each chunk once before any update that uses it; epochs may then run on the already-scored chunk
        only (PG-TTT-005, as in the merged #549).
    """

    id = "PG-TTT-003"
    name = "multi-epoch-ttt"
    conditions = (Condition.C4,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Scores the same tokens in every epoch of TTT and reports a later pass"
    ruling = Ruling(
        "valerio-oai",
        "PR #596, #605, #611 (also #568, #614, #642, #685)",
        "This TTT scheme leaks information: the code trains for multiple epochs on documents and uses the lowest "
        "score at the end of this training as the loss over that document. This is the same as training on the "
        "val set",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_ttt(model, opt, val_tokens, n):
            loss_sum = 0.0
            for ci in range(n):
                chunk = val_tokens[ci * 64:(ci + 1) * 64]
                with torch.inference_mode():
                    loss_sum += model(chunk[:-1], chunk[1:]).item()
                if ci < n - 1:
                    for epoch in range(3):
                        loss = model(chunk[:-1], chunk[1:])
                        loss.backward()
                        opt.step()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_ttt(model, opt, val_tokens, 8))
    """)]
    INVALID = [Invalid("""
        def eval_ttt(model, opt, val_tokens, docs):
            loss_sum = 0.0
            for d in docs:
                x = val_tokens[d:d + 64]
                doc_loss = 0.0
                for epoch in range(3):
                    doc_loss = 0.0
                    ptl = model(x[:-1], x[1:])
                    doc_loss += ptl.item()
                    ptl.backward()
                    opt.step()
                loss_sum += doc_loss
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_ttt(model, opt, val_tokens, range(4)))
    """, line=6)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "epoch", lambda o: (
            f"{o.loop_why}: it scores tokens and then trains on them in every pass, so the reported score "
            "comes from a state that already trained on those tokens"))
