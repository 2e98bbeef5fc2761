"""docs/rules/*.md are generated from the catalogue (rule classes and specs, the single source of truth) and must be
current.

Regenerate with: python -m audits.outputs.ruledoc docs/rules
"""
from __future__ import annotations

from pathlib import Path

from audits.outputs import ruledoc
from audits.registry import all_rules, catalogue

DOCS = Path(__file__).resolve().parents[1] / "docs" / "rules"


def test_rule_docs_are_generated_and_current():
    for rule in catalogue():
        page = DOCS / f"{rule.id}.md"
        assert page.exists(), f"missing {page}; run python -m audits.outputs.ruledoc docs/rules"
        assert page.read_text(encoding="utf-8") == ruledoc.rule_markdown(rule) + "\n", \
            f"{page} is stale; run python -m audits.outputs.ruledoc docs/rules"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    assert index == ruledoc.rules_markdown(list(catalogue())) + "\n"


def test_help_uris_point_at_generated_pages():
    for rule in all_rules():
        assert ruledoc.help_uri(rule.id).endswith(f"docs/rules/{rule.id}.md")


def test_readme_rule_table_agrees_with_the_tool():
    """The README's table of rules: every rule, with the id, name, conditions and severity the tool reports."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        m = re.match(r"^\| ((?:PG|SF)-[A-Z0-9-]+) \| ([a-z0-9-]+) \| ([^|]+) \| ([^|]+) \|$", line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    rules = {r.id: r for r in all_rules()}
    assert sorted(rows) == sorted(rules)
    for rid, (name, conds, severity) in rows.items():
        rule = rules[rid]
        conds = conds.strip()
        want = [c.value for c in rule.conditions]
        got = [f"C{i}" for i in range(int(conds[1]), int(conds[-1]) + 1)] if "–" in conds else conds.split(", ")
        assert (name, got) == (rule.name, want), rid
        assert severity.strip().split()[0] == rule.severity.value, rid
