"""PG-TTT-007: adapters trained on a batch's validation tokens, used again to score that same batch."""
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


class SameBatchAdapterEnsemble(Rule):
    """Flags an ensemble of first-look scores with scores from adapters already trained on the same batch.

    What it flags:
        Per-document TTT scores a batch and stashes those first-look losses, trains the batch's adapters, then
        runs the batch again through the trained adapters (its own, or other documents' "peer" adapters) and
        reports a blend of the two, e.g. `w * p_own + (1 - w) * mean(p_peers)`. The finding sits where the
        second pass starts; the related lines show the stash, the training step and the blend.

    Why it is illegal:
        Every adapter in the second pass was trained on tokens of this batch, some of which come after the
        tokens it now helps score in the original order. The blended figure is not a score-first score of each
        token (C3); "peer adapters never saw this document" does not establish the property.

    Example:
        own_nll[:, a:b] = nll                     # first look
        opt.step()                                # adapters trained on the batch
        peer_nll[:, a:b] = model(x, y, lora=peer) # same tokens, trained adapters
        loss_sum += -log(w * exp(-own_nll) + (1 - w) * exp(-peer_nll)).sum()

    Use instead:
        Report the first-look losses of score-first TTT only (PG-TTT-005); an ensemble member may only use
        adapters trained on tokens that were scored before the token it predicts.
    """

    id = "PG-TTT-007"
    name = "same-batch-adapter-ensemble"
    conditions = (Condition.C3,)
    uses_flows = True
    refines = "PG-TTT-004"
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Blends first-look scores with adapters trained on the same batch"
    ruling = Ruling(
        "cocohearts (Alex Zhao)",
        "PR #2139",
        "the peer-LoRA ensemble … appears to train/use same-batch validation-derived LoRAs for final scoring, so "
        "the strict original-order score-first property is not established",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_ttt(model, lora, opt, val_tokens, chunks):
            loss_sum = 0.0
            own_nll = torch.zeros(len(chunks), 64)
            for i, (a, b) in enumerate(chunks):
                x, y = val_tokens[a:b], val_tokens[a + 1:b + 1]
                with torch.no_grad():
                    nll = model(x, y, lora=lora)
                own_nll[i] = nll
                loss_sum += nll.sum()
                loss = model(x, y, lora=lora).mean()
                loss.backward()
                opt.step()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_ttt(model, lora, opt, val_tokens, chunks))
    """)]
    INVALID = [Invalid("""
        def eval_ttt(model, lora, opt, val_tokens, chunks):
            loss_sum = 0.0
            own_nll = torch.zeros(len(chunks), 64)
            peer_nll = torch.zeros(len(chunks), 64)
            for i, (a, b) in enumerate(chunks):
                x, y = val_tokens[a:b], val_tokens[a + 1:b + 1]
                with torch.no_grad():
                    own_nll[i] = model(x, y, lora=lora)
                loss = model(x, y, lora=lora).mean()
                loss.backward()
                opt.step()
            for i, (a, b) in enumerate(chunks):
                x, y = val_tokens[a:b], val_tokens[a + 1:b + 1]
                with torch.no_grad():
                    peer_nll[i] = model(x, y, lora=lora.roll(1))
            blended = 0.8 * torch.exp(-own_nll) + 0.2 * torch.exp(-peer_nll)
            loss_sum += -torch.log(blended).sum()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_ttt(model, lora, opt, val_tokens, chunks))
    """, line=12)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "ensemble", lambda o: (
            "scores this batch again with adapters trained on it and blends that with the first-look scores "
            "(same-batch adapter ensemble)"))
