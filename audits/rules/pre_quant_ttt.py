"""PG-TTT-002: fine-tuning on validation tokens before quantization, presented as a fixed predictor."""
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


class PreQuantTTT(Rule):
    """Flags training on validation tokens before quantization/serialization, scored after.

    What it flags:
        An update on validation tokens that were not scored before it, followed by quantization or
        serialization of the model (`gptq_mixed_quantize`, `serialize`, `torch.save`) and then the score:
        the "pre-quant TTT" cluster (`prequant_ttt_adapt_adamw(h, base_model, device, val_data.val_tokens)`).

    Why it is illegal:
        The reported score comes from weights that were adapted on the validation stream before the final
        score — score-after-adapt on validation data, which violates the score-first condition (C3). Moving
        the adaptation before export does not make the artifact a fixed predictor.

    Example:
        prequant_ttt_adapt_adamw(h, base_model, device, val_data.val_tokens)
        blob = gptq_mixed_quantize(base_model)
        val_loss, val_bpb = eval_val_sliding(h, dequantize(blob), val_data.val_tokens)

    Use instead:
        Quantize the trained model as is; adapt only at evaluation time, score-first (PG-TTT-005).
    """

    id = "PG-TTT-002"
    name = "pre-quant-ttt"
    conditions = (Condition.C3,)
    uses_flows = True
    refines = "PG-TTT-001"
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Fine-tunes on validation tokens before quantization, then scores them"
    ruling = Ruling(
        "cocohearts (Alex Zhao)",
        "PR #1972; leaderboard audit PR #1902",
        "the reported … score is after PreQuantTTT adapts on the validation stream before the final score, so it "
        "is score-after-adapt on validation data and violates the score-first/C3 rule",
        "maintainer ruling",
    )
    VALID = [Valid("""
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        blob = gptq_mixed_quantize(model)
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def prequant_ttt(model, val_tokens):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            for epoch in range(4):
                loss = model(val_tokens[:-1], val_tokens[1:])
                loss.backward()
                opt.step()
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        prequant_ttt(model, val_tokens)
        blob = gptq_mixed_quantize(model)
        print(eval_val(model, val_tokens))
    """, line=6)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "pre_quant", lambda o: (
            "optimizer step adapts on validation tokens before quantization; the same tokens are scored after it"))
