"""Every rule, found by module: `audits/rules/<rule_name>.py` holds exactly one `Rule` subclass."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from audits.rule import Rule


@lru_cache(maxsize=1)
def all_rules() -> tuple[type[Rule], ...]:
    import audits.rules as pkg

    found: list[type[Rule]] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"audits.rules.{info.name}")
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, Rule) and v is not Rule and v.__module__ == module.__name__]
        if len(classes) != 1:
            raise RuntimeError(f"audits/rules/{info.name}.py must define exactly one rule, found {len(classes)}")
        found.append(classes[0])
    ids = [r.id for r in found]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"duplicate rule ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    return tuple(sorted(found, key=lambda r: r.id))


def rule_by_id(rule_id: str) -> type[Rule] | None:
    return next((r for r in all_rules() if r.id == rule_id), None)


@lru_cache(maxsize=1)
def catalogue() -> tuple:
    """Every id an output can print, with its doc: the static rules and the specs of the dynamic checks and probes,
    the gate's checks and the legal patterns (audits/spec.py), sorted by id."""
    from audits.specs import dynamic, gate, legal

    entries = [*all_rules(), *dynamic.specs(), *gate.specs(), *legal.specs()]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"duplicate catalogue ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    return tuple(sorted(entries, key=lambda e: e.id))


def entry_by_id(rule_id: str):
    """The rule or spec with this id, or None."""
    return next((e for e in catalogue() if e.id == rule_id), None)
