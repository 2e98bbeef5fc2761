"""Rule documentation as text and Markdown: `scorefirst rules`, SARIF rule help and the docs pages share it."""
from __future__ import annotations

from audits.rule import Rule

DOCS_URI = "https://github.com/scorefirst/scorefirst/blob/main/docs/rules/{id}.md"
_CODE_SECTIONS = ("Example",)


def help_uri(rule_id: str) -> str:
    return DOCS_URI.format(id=rule_id)


def ruling_line(rule: type[Rule]) -> str:
    r = rule.ruling
    return f"{r.status}: {r.who} ({r.where})"


def rule_row(rule: type[Rule]) -> dict[str, str]:
    return {
        "id": rule.id,
        "name": rule.name,
        "conditions": ",".join(c.value for c in rule.conditions),
        "severity": rule.severity.value,
        "summary": rule.summary(),
    }


def rules_text(rules: list[type[Rule]]) -> str:
    rows = [rule_row(r) for r in rules]
    cols = ("id", "name", "conditions", "severity")
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
    head = "  ".join(c.upper().ljust(widths[c]) for c in cols) + "  SUMMARY"
    lines = [head]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in cols) + "  " + r["summary"])
    lines.append("")
    lines.append(f"{len(rows)} rules. `scorefirst rules RULE-ID` prints one rule's full documentation and ruling.")
    return "\n".join(lines) + "\n"


def rules_markdown(rules: list[type[Rule]]) -> str:
    lines = ["| id | name | conditions | severity | summary |", "|---|---|---|---|---|"]
    for rule in rules:
        r = rule_row(rule)
        summary = r["summary"].replace("|", "\\|")
        lines.append(f"| [{r['id']}]({help_uri(r['id'])}) | `{r['name']}` | {r['conditions']} | {r['severity']} | {summary} |")
    return "\n".join(lines) + "\n"


def rule_text(rule: type[Rule]) -> str:
    r = rule.ruling
    out = [
        f"{rule.id}  {rule.name}",
        f"conditions: {', '.join(c.title for c in rule.conditions)}",
        f"severity: {rule.severity.value}   confidence: {rule.confidence.value}",
        *([f"refines: {rule.refines}"] if rule.refines else []),
        "",
        rule.doc(),
        "",
        "Ruling:",
        f"    {r.status}: {r.who}",
        f"    where: {r.where}",
        f'    "{r.quote}"',
        "",
        f"More: {help_uri(rule.id)}",
    ]
    return "\n".join(out) + "\n"


def rule_markdown(rule: type[Rule]) -> str:
    r = rule.ruling
    secs = rule.sections()
    out = [
        f"# {rule.id}: {rule.name}",
        "",
        secs.get("summary", rule.summary()),
        "",
        f"- **Conditions:** {', '.join(c.title for c in rule.conditions)}",
        f"- **Severity:** {rule.severity.value} · **Confidence:** {rule.confidence.value}",
        *([f"- **Refines:** [{rule.refines}]({rule.refines}.md): every finding of this rule is also one of that rule"]
          if rule.refines else []),
        "",
    ]
    for name in ("What it flags", "Why it is illegal", "Example", "Use instead"):
        body = secs.get(name)
        if not body:
            continue
        out.append(f"## {name}")
        out.append("")
        if name in _CODE_SECTIONS:
            out.extend(["```python", body, "```"])
        else:
            out.append(body)
        out.append("")
    out.extend([
        "## Ruling",
        "",
        f"{r.status} by {r.who} ({r.where}):",
        "",
        "> " + r.quote.replace("\n", "\n> "),
        "",
    ])
    return "\n".join(out)


def write_docs(folder: str) -> int:
    """Write docs/rules/<ID>.md for every rule and an index README.md (the pages the SARIF helpUri links)."""
    from pathlib import Path

    from audits.registry import all_rules

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rules = list(all_rules())
    for rule in rules:
        (out / f"{rule.id}.md").write_text(rule_markdown(rule) + "\n", encoding="utf-8")
    (out / "README.md").write_text(rules_markdown(rules) + "\n", encoding="utf-8")
    return len(rules)


if __name__ == "__main__":
    import sys

    print(f"wrote {write_docs(sys.argv[1] if len(sys.argv) > 1 else 'docs/rules')} rule pages")
