"""PG-SLOT-001: optimizing a delta/logit bias against the very targets being scored."""
from __future__ import annotations

from audits.rulekit import (
    SCORE,
    TARGET,
    UPDATE,
    VAL,
    Condition,
    Confidence,
    Hit,
    Invalid,
    Occ,
    Rule,
    Ruling,
    Severity,
    Valid,
    exclusive,
)


class SlotOnScoredRegion(Rule):
    """Flags SLOT: an optimizer over tensors created inside evaluation, stepped on a loss over the scored targets.

    What it flags:
        Inside an evaluation function, a leaf tensor created with `requires_grad=True` (a hidden-state delta or
        a logit bias), an optimizer over it, and a step whose loss is computed from validation targets; the
        optimized tensor then feeds the reported NLL.

    Why it is illegal:
        The delta is fitted to the targets it is then scored on, so every position's prediction depends on its
        own (and later) tokens. PR #1240 measured a 100% cross-position violation rate (240/240) for shared and
        per-sample SLOT (C3, C1).

    Example:
        delta = torch.zeros(bsz, 1, dim, requires_grad=True)
        slot_opt = torch.optim.AdamW([delta], lr=1e-2)
        for _ in range(slot_steps):
            nll = F.cross_entropy(head(h + delta), targets); nll.backward(); slot_opt.step()

    Use instead:
        Score with the fixed model; adapt only on already-scored positions (score-first TTT). A per-document
        adapter that scores each window under no-grad before optimizing on it, and is reset per document, is
        score-first and not flagged.
    """

    id = "PG-SLOT-001"
    name = "slot-on-scored-region"
    conditions = (Condition.C3,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Optimizes an eval-time delta against the targets being scored"
    ruling = Ruling(
        "community (andrewbaggio1, MatoTeziTanka, Bortlesboat); no maintainer text found",
        "PR #1240 (prove_slot_causal_violation.py); reviews on #1319, #1321",
        "100% cross-position violation rate (240/240) for both shared and per-sample SLOT",
        "community consensus",
    )
    VALID = [Valid("""
        def eval_doc_adapter(model, val_tokens, n_windows):
            loss_sum = 0.0
            delta = torch.zeros(1, 1, 512, requires_grad=True)
            slot_opt = torch.optim.AdamW([delta], lr=0.01)
            for w in range(n_windows):
                x, y = val_tokens[w * 64:(w + 1) * 64], val_tokens[w * 64 + 1:(w + 1) * 64 + 1]
                with torch.no_grad():
                    loss_sum += F.cross_entropy(model.head(model.hidden(x) + delta), y).item()
                nll = F.cross_entropy(model.head(model.hidden(x) + delta), y)
                nll.backward()
                slot_opt.step()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_doc_adapter(model, val_tokens, 16))
    """), Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                logits = model(val_tokens[:-1])
                loss_sum += F.cross_entropy(logits, val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_slot(model, val_tokens):
            loss_sum = 0.0
            x, y = val_tokens[:-1], val_tokens[1:]
            delta = torch.zeros(1, 1, 512, requires_grad=True)
            slot_opt = torch.optim.AdamW([delta], lr=0.01)
            for _ in range(8):
                nll = F.cross_entropy(model.head(model.hidden(x) + delta), y)
                nll.backward()
                slot_opt.step()
            with torch.no_grad():
                loss_sum += F.cross_entropy(model.head(model.hidden(x) + delta), y).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_slot(model, val_tokens))
    """, line=9)]

    def check(self, ctx):
        for flow in ctx.flows:
            scores = [o for o in flow.occs if o.kind == SCORE]
            for o in flow.occs:
                if o.kind == UPDATE and o.slot and (VAL in o.taint or TARGET in o.taint):
                    after = _scored_after(o, scores)
                    if after is not None:
                        yield Hit(None, f"`{o.ev.name}` optimizes a tensor created in evaluation against the scored "
                                        "targets; the optimized tensor then produces the reported NLL", line=o.line,
                                  related=[(after.line, "the same window is scored here, after the optimization")])


def _scored_after(u: Occ, scores: list[Occ]) -> Occ | None:
    """The score that comes from the optimized tensor: after the step, in the same call of the evaluation that
    created the tensor (one occurrence stands for every iteration of a loop, so a score placed before the step in
    a loop body is the next window's). A per-document adapter that scores each
    window first and optimizes only on what it already scored, reset per document, has none: it is score-first."""
    for s in scores:
        if s.order > u.order and not exclusive(s, u) and s.chain[: len(u.chain)] == u.chain:
            return s
    return None
