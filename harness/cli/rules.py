"""`scorefirst rules`: list the catalogue (audits.registry.catalogue), or print one entry's doc and ruling."""
from __future__ import annotations

import argparse

from harness.cli.common import EXIT_OK, UsageError, stdout


def add_parser(sub) -> None:
    rules = sub.add_parser("rules", help="list the rules, or print one rule's documentation and ruling",
                           description="List every rule, or print one rule's full documentation and the ruling "
                                       "it rests on.")
    rules.add_argument("rule_id", nargs="?", metavar="RULE-ID")
    rules.add_argument("--format", default="text", choices=["text", "json", "markdown"])
    rules.set_defaults(func=cmd_rules)


def cmd_rules(args: argparse.Namespace) -> int:
    import json

    from audits.outputs import ruledoc
    from audits.registry import catalogue, entry_by_id

    if args.rule_id:
        rule = entry_by_id(args.rule_id) or entry_by_id(args.rule_id.upper()) or entry_by_id(args.rule_id.lower())
        if rule is None:
            raise UsageError(f"unknown rule {args.rule_id!r}; `scorefirst rules` lists them")
        if args.format == "json":
            text = json.dumps(rule.metadata(), indent=2) + "\n"
        elif args.format == "markdown":
            text = ruledoc.rule_markdown(rule)
        else:
            text = ruledoc.rule_text(rule)
    else:
        rules = list(catalogue())
        if args.format == "json":
            text = json.dumps([r.metadata() for r in rules], indent=2) + "\n"
        elif args.format == "markdown":
            text = ruledoc.rules_markdown(rules)
        else:
            text = ruledoc.rules_text(rules)
    stdout(text)
    return EXIT_OK
