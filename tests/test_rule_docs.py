"""docs/rules/*.md are generated from the rule classes (the single source of truth) and must be current.

Regenerate with: python -m audits.outputs.ruledoc docs/rules
"""
from __future__ import annotations

from pathlib import Path

from audits.outputs import ruledoc
from audits.registry import all_rules

DOCS = Path(__file__).resolve().parents[1] / "docs" / "rules"


def test_rule_docs_are_generated_and_current():
    for rule in all_rules():
        page = DOCS / f"{rule.id}.md"
        assert page.exists(), f"missing {page}; run python -m audits.outputs.ruledoc docs/rules"
        assert page.read_text(encoding="utf-8") == ruledoc.rule_markdown(rule) + "\n", \
            f"{page} is stale; run python -m audits.outputs.ruledoc docs/rules"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    assert index == ruledoc.rules_markdown(list(all_rules())) + "\n"


def test_help_uris_point_at_generated_pages():
    for rule in all_rules():
        assert ruledoc.help_uri(rule.id).endswith(f"docs/rules/{rule.id}.md")
