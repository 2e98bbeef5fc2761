"""Rule documentation as text and Markdown: `scorefirst rules`, SARIF rule help and the docs pages share it.

Every entry of the catalogue (`audits.registry.catalogue`: static rules and the specs of dynamic checks, gate
checks and legal patterns) renders the same way; `kind` says which it is."""
from __future__ import annotations

from audits.rule import SECTIONS, Rule

DOCS_URI = "https://github.com/scorefirst/scorefirst/blob/main/docs/rules/{id}.md"
_CODE_SECTIONS = ("Example",)


KIND_TITLES = {"dynamic": "a check of the dynamic audit (a traced run)", "gate": "a check of the CI gate",
               "legal": "a legal pattern: never flagged, documented so findings can point to it"}


def help_uri(rule_id: str) -> str:
    return DOCS_URI.format(id=rule_id)


def ruling_line(rule: type[Rule]) -> str:
    r = rule.ruling
    return f"{r.status}: {r.who} ({r.where})"


def rule_row(rule: type[Rule]) -> dict[str, str]:
    return {
        "id": rule.id,
        "kind": rule.kind,
        "name": rule.name,
        "conditions": ",".join(c.value for c in rule.conditions),
        "severity": rule.severity.value,
        "summary": rule.summary(),
    }


def rules_text(rules: list[type[Rule]]) -> str:
    rows = [rule_row(r) for r in rules]
    cols = ("id", "kind", "name", "conditions", "severity")
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
    head = "  ".join(c.upper().ljust(widths[c]) for c in cols) + "  SUMMARY"
    lines = [head]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in cols) + "  " + r["summary"])
    lines.append("")
    lines.append(f"{len(rows)} rules. `scorefirst rules RULE-ID` prints one rule's full documentation and ruling.")
    return "\n".join(lines) + "\n"


def rules_markdown(rules: list[type[Rule]]) -> str:
    lines = ["| id | kind | name | conditions | severity | summary |", "|---|---|---|---|---|---|"]
    for rule in rules:
        r = rule_row(rule)
        summary = r["summary"].replace("|", "\\|")
        lines.append(f"| [{r['id']}]({help_uri(r['id'])}) | {r['kind']} | `{r['name']}` | {r['conditions']} "
                     f"| {r['severity']} | {summary} |")
    return "\n".join(lines) + "\n"


def rule_text(rule: type[Rule]) -> str:
    r = rule.ruling
    out = [
        f"{rule.id}  {rule.name}" + ("" if rule.kind == "static" else f"  ({KIND_TITLES[rule.kind]})"),
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
        *([f"*{KIND_TITLES[rule.kind]}*", ""] if rule.kind != "static" else []),
        secs.get("summary", rule.summary()),
        "",
        f"- **Conditions:** {', '.join(c.title for c in rule.conditions)}",
        f"- **Severity:** {rule.severity.value} · **Confidence:** {rule.confidence.value}",
        *([f"- **Refines:** [{rule.refines}]({rule.refines}.md): every finding of this rule is also one of that rule"]
          if rule.refines else []),
        "",
    ]
    for name, body in secs.items():
        if name not in SECTIONS or not body:
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
    """Write docs/rules/<ID>.md for every catalogue entry and an index README.md (the pages the SARIF helpUri links)."""
    from pathlib import Path

    from audits.registry import catalogue

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rules = list(catalogue())
    for rule in rules:
        (out / f"{rule.id}.md").write_text(rule_markdown(rule) + "\n", encoding="utf-8")
    (out / "README.md").write_text(rules_markdown(rules) + "\n", encoding="utf-8")
    return len(rules)


if __name__ == "__main__":
    import sys

    print(f"wrote {write_docs(sys.argv[1] if len(sys.argv) > 1 else 'docs/rules')} rule pages")
