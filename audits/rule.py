"""The rule contract: one rule per module, one class per rule, metadata, docs and examples in one place.

A rule's class docstring is its user-facing doc, written in four sections ("What it flags", "Why it is
illegal", "Example", "Use instead"); `VALID` and `INVALID` are small programs that `tests/test_rule_examples.py`
runs through the whole analyzer, so every rule's examples are also its tests.

Node tests read `type(n) is cst.Call`, not `isinstance(n, cst.Call)`: libcst's classes use ABCMeta, whose
isinstance costs several times an exact type test, and the concrete node classes have no subclasses.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import libcst as cst

from audits.flow import Flow
from audits.program import Program
from audits.types import Condition, Confidence, Ruling, Severity


@dataclass(frozen=True)
class Valid:
    code: str
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Invalid:
    code: str
    line: int  # the line (of the dedented code) the finding must be reported at
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Hit:
    node: cst.CSTNode | None
    message: str
    line: int = 0
    related: list[tuple[int, str]] = field(default_factory=list)
    severity: Severity | None = None  # a rule's lesser hits (a note where it otherwise warns); None: the rule's


@dataclass
class Context:
    """What a rule sees: the program model and its linearized runs."""

    prog: Program
    flows: list[Flow]
    memo: dict = field(default_factory=dict)  # facts derived once per context (e.g. the evaluation functions)


# Rules and illegal-evidence specs are written in the first four; legal patterns in the last three.
SECTIONS = ("What it flags", "Why it is illegal", "Example", "Use instead", "What it is", "Why it is legal",
            "What is flagged instead")


def split_sections(doc: str) -> dict[str, str]:
    """A four-part doc split into its named sections (a section header is a line ending in ':'), in doc order."""
    out: dict[str, str] = {}
    current = "summary"
    for line in doc.splitlines():
        header = line.strip().rstrip(":")
        if line.strip().endswith(":") and header in SECTIONS:
            current = header
            continue
        out.setdefault(current, "")
        out[current] += line + "\n"
    return {k: textwrap.dedent(v).strip() for k, v in out.items()}


def slug(rule_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", rule_id.lower()).strip("-")


class Rule:
    id: ClassVar[str]
    name: ClassVar[str]
    conditions: ClassVar[tuple[Condition, ...]]
    severity: ClassVar[Severity]
    confidence: ClassVar[Confidence]
    ruling: ClassVar[Ruling]
    message: ClassVar[str]
    # Rules that read the linearized run are checked under the configuration and on all paths; rules that only
    # match code shapes are checked once, and the engine marks their hits in dead code inactive.
    uses_flows: ClassVar[bool] = False
    # The rule this one narrows (PG-TTT-002, train-then-score with quantization in between, is a PG-TTT-001): a
    # ruling under the broader id is caught by a finding of the narrower one.
    refines: ClassVar[str | None] = None
    kind: ClassVar[str] = "static"  # checked by this class on the source (audits/spec.py: the other kinds)
    VALID: ClassVar[list[Valid]] = []
    INVALID: ClassVar[list[Invalid]] = []

    def check(self, ctx: Context) -> Iterator[Hit]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def doc(cls) -> str:
        return textwrap.dedent(cls.__doc__ or "").strip()

    @classmethod
    def summary(cls) -> str:
        return cls.doc().split("\n\n", 1)[0].replace("\n", " ")

    @classmethod
    def sections(cls) -> dict[str, str]:
        return split_sections(cls.doc())

    @classmethod
    def slug(cls) -> str:
        return slug(cls.id)

    @classmethod
    def metadata(cls) -> dict:
        return {
            "id": cls.id,
            "kind": cls.kind,
            "name": cls.name,
            "conditions": [c.value for c in cls.conditions],
            "severity": cls.severity.value,
            "confidence": cls.confidence.value,
            "message": cls.message,
            "summary": cls.summary(),
            "ruling": {"who": cls.ruling.who, "where": cls.ruling.where, "quote": cls.ruling.quote,
                       "status": cls.ruling.status},
            "doc": cls.doc(),
        }
