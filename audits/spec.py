"""A rule spec for evidence the static rules do not produce: what the dynamic audit's ledger checks and probes,
the CI gate's checks and the legal patterns the docs point to are, separate from the code that checks them.

A static rule is its own spec (`audits.rule.Rule`: a class that also holds its `check`); a `Spec` answers to the
same names (`id`, `name`, `conditions`, `severity`, `doc()`, `sections()`, `metadata()` ...), so `scorefirst rules`,
docs/rules/, SARIF rule metadata and the HTML rule pages render both alike (`audits.registry.catalogue`)."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

from audits.rule import Invalid, Valid, slug, split_sections
from audits.types import Condition, Confidence, Ruling, Severity

KINDS = ("static", "dynamic", "gate", "legal")


@dataclass(frozen=True)
class Spec:
    id: str
    name: str
    kind: str  # "dynamic" (ledger check or probe), "gate" (a gate check's message), "legal" (a legal pattern)
    conditions: tuple[Condition, ...]
    severity: Severity  # the most a violation weighs: ERROR fails its condition, WARNING asks a person to look
    confidence: Confidence
    ruling: Ruling
    message: str
    text: str  # the four-part doc, in the sections of audits.rule.SECTIONS
    refines: str | None = None
    VALID: tuple[Valid, ...] = ()
    INVALID: tuple[Invalid, ...] = ()

    def __post_init__(self):
        assert self.kind in KINDS[1:], self.kind

    def doc(self) -> str:
        return textwrap.dedent(self.text).strip()

    def summary(self) -> str:
        return self.doc().split("\n\n", 1)[0].replace("\n", " ")

    def sections(self) -> dict[str, str]:
        return split_sections(self.doc())

    def slug(self) -> str:
        return slug(self.id)

    def metadata(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "conditions": [c.value for c in self.conditions],
            "severity": self.severity.value, "confidence": self.confidence.value, "message": self.message,
            "summary": self.summary(),
            "ruling": {"who": self.ruling.who, "where": self.ruling.where, "quote": self.ruling.quote,
                       "status": self.ruling.status},
            "doc": self.doc(),
        }
