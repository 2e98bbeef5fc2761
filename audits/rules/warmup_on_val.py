"""PG-TTT-006: warm-up/compile passes that step the optimizer on validation tokens, state restored after."""
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


class WarmupOnVal(Rule):
    """Warns about warm-up steps on validation tokens before scoring, even when the state is restored after.

    What it flags:
        An optimizer step on validation tokens that are scored later, where the weights and the optimizer
        state are restored (`load_state_dict`, re-created optimizer) between the warm-up and the score. Without
        a restore the same shape is PG-TTT-001.

    Why it is illegal:
        It is a gray case: #1530 was merged after the author showed parameters and optimizer state are reset
        and a rerun without warm-up gave the same score within noise. The tokens were still used before being
        scored, so a person should confirm the reset is complete (buffers, RNG, compile caches).

    Example:
        for _ in range(warmup_steps):
            model(val_tokens[:2048]).backward(); opt.step()
        model.load_state_dict(initial_state); opt.load_state_dict(initial_opt)

    Use instead:
        Warm up torch.compile on synthetic random tokens of the same shape.
    """

    id = "PG-TTT-006"
    name = "warmup-on-val"
    conditions = (Condition.C3,)
    uses_flows = True
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    message = "Warm-up steps the optimizer on validation tokens before scoring (state restored)"
    ruling = Ruling(
        "maintainers (merged #1530); dexhunter and codemath3000 (review)",
        "PR #1530, PR #1899",
        "the compile warmup appears to use actual validation tokens before the main eval loop, and it also does "
        "backward() / step() — answered: parameters and optimizer states are reset",
        "gray: accepted when state is reset",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        fake = torch.randint(0, 1024, (2048,))
        for _ in range(3):
            model(fake[:-1], fake[1:]).backward()
            opt.step()
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        state = copy.deepcopy(model.state_dict())
        opt_state = copy.deepcopy(opt.state_dict())
        for _ in range(3):
            model(val_tokens[:2048], val_tokens[1:2049]).backward()
            opt.step()
        model.load_state_dict(state)
        opt.load_state_dict(opt_state)
        print(eval_val(model, val_tokens))
    """, line=11)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "warmup_restored", lambda o: (
            "warm-up optimizer step on validation tokens before they are scored; weights and optimizer are "
            "restored afterwards (gray: confirm the reset is complete)"))
