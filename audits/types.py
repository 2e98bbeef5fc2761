"""Vocabulary shared by rules, results and every output format."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Condition(str, enum.Enum):
    """The legality conditions a verdict is given for (C1–C4 from the Field Guide, plus rule families)."""

    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    DATA = "DATA"
    CAL = "CAL"
    NET = "NET"
    BYTES = "BYTES"

    @property
    def title(self) -> str:
        return CONDITION_TITLES[self]


CONDITION_TITLES = {
    Condition.C1: "C1 strict causal dependence",
    Condition.C2: "C2 full normalized distribution",
    Condition.C3: "C3 score before update",
    Condition.C4: "C4 single left-to-right pass",
    Condition.DATA: "Data access (validation/training data)",
    Condition.CAL: "Calibration inside the training budget",
    Condition.NET: "No network during evaluation",
    Condition.BYTES: "Byte accounting of the BPB denominator",
}


class Severity(str, enum.Enum):
    """ERROR findings fail their condition; WARNING asks a person to look; INFO never affects a verdict."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class Confidence(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Verdict(enum.StrEnum):
    """The one verdict vocabulary of the static audit, the dynamic audit, the gate and the reports. An audit's
    conditions are PASS, WARN or FAIL (`AUDIT_VERDICTS`); a gate check may also be SKIP (it did not apply) or ERROR
    (it could not judge: the gate exits 2)."""

    PASS = "PASS"
    SKIP = "SKIP"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"

    @property
    def rank(self) -> int:
        return {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2, "ERROR": 3}[self.value]

    @staticmethod
    def worst(*verdicts: Verdict | None) -> Verdict | None:
        """The worst of the verdicts given (None where nothing was judged); None when none was."""
        given = [v for v in verdicts if v is not None]
        return max(given, key=lambda v: v.rank) if given else None


AUDIT_VERDICTS = (Verdict.PASS, Verdict.WARN, Verdict.FAIL)


def combined(static: Verdict | None, dynamic: Verdict | None) -> Verdict | None:
    """The verdict a condition gets from both audits: a disagreement is surfaced elsewhere, never resolved in the
    submission's favour, so the worse of the two decides."""
    return Verdict.worst(static, dynamic)


class Status(str, enum.Enum):
    """Whether a finding counts: only ACTIVE findings reach the verdict."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Ruling:
    """Who ruled, where, and the words the rule rests on."""

    who: str
    where: str
    quote: str
    status: str  # "maintainer ruling", "community consensus", "contested", "scorefirst policy"
