"""SF-SUPP-001: suppressions that suppress nothing, name unknown rules, or give no reason."""
from __future__ import annotations

from audits.registry import all_rules
from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
)


class SuppressionHygiene(Rule):
    """Reports `# scorefirst: ignore[...]` comments that do not do what they claim.

    What it flags:
        A suppression that matched no finding (stale, like Ruff's RUF100), one naming an unknown rule id, and
        one without a reason — a suppression without a reason is not applied.

    Why it is illegal:
        It is not; but a reviewer must be able to trust every suppression in a submission, so each one is listed
        with its reason in every output, and dead or unexplained ones are called out.

    Example:
        loss.backward(); opt.step()   # scorefirst: ignore[PG-TTT-001]

    Use instead:
        `# scorefirst: ignore[PG-TTT-001] warm-up on a copy of the model, discarded before scoring`
    """

    id = "SF-SUPP-001"
    name = "suppression-hygiene"
    conditions = (Condition.C3,)
    severity = Severity.INFO
    confidence = Confidence.HIGH
    message = "Suppression comment does nothing"
    needs_suppressions = True
    ruling = Ruling("scorefirst policy", "CONVENTIONS.md: named-only suppressions", "Every suppression is listed "
                    "in the report … RUF100-style unused suppression detection.", "scorefirst policy")
    VALID = [Valid("""
        import os
        x = os.environ.get("X", "0")
    """)]
    INVALID = [Invalid("""
        import os
        x = os.environ.get("X", "0")  # scorefirst: ignore[PG-NET] left over from an old version
    """, line=2)]

    def check(self, ctx):
        known = {r.id for r in all_rules()}
        for sup in getattr(ctx, "suppressions", []):
            unknown = [i for i in sup.rule_ids if i not in known]
            if not sup.rule_ids:
                msg = "suppression names no rule id; blanket suppressions are not accepted"
            elif unknown:
                msg = f"suppression names unknown rule id(s): {', '.join(unknown)}"
            elif not sup.reason:
                msg = f"suppression of {', '.join(sup.rule_ids)} gives no reason, so it is not applied"
            elif not sup.used:
                msg = f"unused suppression: no {', '.join(sup.rule_ids)} finding on this line"
            else:
                continue
            yield Hit(None, msg, line=sup.line)
