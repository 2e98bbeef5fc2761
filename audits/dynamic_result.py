"""The dynamic audit's result: the ``dynamic`` section of an :class:`audits.results.AuditResult` (single source of truth).

``AuditResult.dynamic`` holds a ``DynamicResult``; ``to_dict()`` is its JSON section (read back with ``from_dict``
only where a file is read), and its shape is fixed::

    {
     "mode": "reference" | "script",          # the reference model through its observer, or a traced script
     "script": str | null,                    # the traced script (script mode)
     "ledger": {"positions": int, "events": int, "score_events": int, "update_events": int,
                "complete": bool, "path": str | null},
     "reported": {"val_loss": float | null, "val_bpb": float | null},       # what the evaluation claimed
     "reconstructed": {"val_loss": float | null, "val_bpb": float | null},  # from the ledger's first scores
     "leak": {"reported_loss": float, "first_look_loss": float, "reported_bpb": float | null,
              "first_look_bpb": float | null, "worth_bpb": float | null, "sentence": str} | null,
                                              # the reported score against each position's earliest prediction
     "checks": [{"id": str, "condition": "C1"|"C2"|"C3"|"C4"|"DATA"|"BYTES", "verdict": "PASS"|"WARN"|"FAIL",
                 "message": str,
                 "first_violation": {"position": int, "score_seq": int | null, "update_seq": int | null,
                                     "detail": str} | null}],
     "probes": [{"name": "future-perturbation" | "normalization", "condition": "C1" | "C2",
                 "verdict": "PASS"|"WARN"|"FAIL", "probed": str, "max_abs_diff": float | null, "message": str}],
     "timeline": {"positions": int, "max_seq": int, "downsampled": bool,
                  "events": [{"kind": "score" | "update", "seq": int, "start": int, "stop": int}],   # <= ~2000
                  "violations": [{"position": int, "score_seq": int, "update_seq": int}]},
     "agreement": [{"condition": str, "static": verdict | null, "dynamic": verdict | null, "agree": bool | null}],
     "sandbox": {"isolation": str, "network": str, "wall_seconds": float, "exit_code": int | null,
                 "limits": {"cpu_seconds": int, "memory_mb": int, "wall_seconds": int, "disk_mb": int},
                 "network_attempts": [str], "killed": str | null, "write_attempts": [str]} | null,
     "verdict": {"conditions": {"C1": v, "C2": v, "C3": v, "C4": v}, "overall": "PASS"|"WARN"|"FAIL"}
    }

Conventions:

* ``seq`` values are the ledger's global sequence numbers (one counter over every event kind), so "score_seq <
  update_seq" is the score-before-update claim; wall-clock time is never used for ordering.
* ``timeline.events`` are ranges of positions, not tokens; when the ledger has more than ``TIMELINE_CAP`` ranges,
  consecutive ranges of the same kind are merged into their hull (keeping the first seq) and ``downsampled`` is
  true. ``timeline.violations`` is a sample (at most ``VIOLATION_CAP``, evenly spread) of C3 violations.
* ``verdict.conditions[c]`` is the worst verdict of the checks and probes of condition c, or ``null`` when nothing
  examined c (e.g. probes were skipped); ``overall`` is the worst over every check and probe (DATA and BYTES too).
* ``agreement`` has one row per condition that either side judged; ``agree`` is null when one side has no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audits.types import Verdict

CHECK_CONDITIONS = ("C1", "C2", "C3", "C4", "DATA", "BYTES")
TIMELINE_CAP = 2000
VIOLATION_CAP = 200


def _verdict(v: Verdict | str | None) -> Verdict | None:
    return None if v is None else Verdict(v)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


@dataclass
class Violation:
    position: int
    score_seq: int | None
    update_seq: int | None
    detail: str

    def to_dict(self) -> dict:
        return {"position": int(self.position), "score_seq": None if self.score_seq is None else int(self.score_seq),
                "update_seq": None if self.update_seq is None else int(self.update_seq), "detail": self.detail}

    @classmethod
    def from_dict(cls, d: dict) -> "Violation":
        return cls(d["position"], d.get("score_seq"), d.get("update_seq"), d.get("detail", ""))


@dataclass
class Check:
    id: str
    condition: str
    verdict: Verdict
    message: str
    first_violation: Violation | None = None

    def __post_init__(self):
        assert self.condition in CHECK_CONDITIONS, self.condition
        self.verdict = Verdict(self.verdict)

    def to_dict(self) -> dict:
        return {"id": self.id, "condition": self.condition, "verdict": self.verdict.value, "message": self.message,
                "first_violation": self.first_violation.to_dict() if self.first_violation else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Check":
        fv = d.get("first_violation")
        return cls(d["id"], d["condition"], d["verdict"], d.get("message", ""),
                   Violation.from_dict(fv) if fv else None)


@dataclass
class Probe:
    name: str           # "future-perturbation" | "normalization"
    condition: str      # "C1" | "C2"
    verdict: Verdict
    probed: str
    max_abs_diff: float | None
    message: str

    def __post_init__(self):
        assert self.name in ("future-perturbation", "normalization"), self.name
        assert self.condition in ("C1", "C2"), self.condition
        self.verdict = Verdict(self.verdict)

    def to_dict(self) -> dict:
        return {"name": self.name, "condition": self.condition, "verdict": self.verdict.value, "probed": self.probed,
                "max_abs_diff": _num(self.max_abs_diff), "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> "Probe":
        return cls(d["name"], d["condition"], d["verdict"], d.get("probed", ""), d.get("max_abs_diff"),
                   d.get("message", ""))


@dataclass
class TimelineEvent:
    kind: str
    seq: int
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {"kind": self.kind, "seq": int(self.seq), "start": int(self.start), "stop": int(self.stop)}


@dataclass
class Timeline:
    positions: int = 0
    max_seq: int = 0
    downsampled: bool = False
    events: list[TimelineEvent] = field(default_factory=list)
    violations: list[tuple[int, int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"positions": int(self.positions), "max_seq": int(self.max_seq), "downsampled": bool(self.downsampled),
                "events": [e.to_dict() for e in self.events],
                "violations": [{"position": int(p), "score_seq": int(s), "update_seq": int(u)}
                               for p, s, u in self.violations]}

    @classmethod
    def from_dict(cls, d: dict) -> "Timeline":
        return cls(d.get("positions", 0), d.get("max_seq", 0), bool(d.get("downsampled")),
                   [TimelineEvent(e["kind"], e["seq"], e["start"], e["stop"]) for e in d.get("events", [])],
                   [(v["position"], v["score_seq"], v["update_seq"]) for v in d.get("violations", [])])


@dataclass
class Agreement:
    condition: str
    static: Verdict | None
    dynamic: Verdict | None

    def __post_init__(self):
        self.static, self.dynamic = _verdict(self.static), _verdict(self.dynamic)

    @property
    def agree(self) -> bool | None:
        if self.static is None or self.dynamic is None:
            return None
        return self.static == self.dynamic

    def to_dict(self) -> dict:
        return {"condition": self.condition, "static": self.static and self.static.value,
                "dynamic": self.dynamic and self.dynamic.value, "agree": self.agree}


@dataclass
class SandboxInfo:
    isolation: str
    network: str
    wall_seconds: float
    exit_code: int | None
    limits: dict
    network_attempts: list[str] = field(default_factory=list)
    killed: str | None = None
    write_attempts: list[str] = field(default_factory=list)   # writes outside the work directory, refused

    def to_dict(self) -> dict:
        lim = self.limits or {}
        return {"isolation": self.isolation, "network": self.network, "wall_seconds": round(float(self.wall_seconds), 3),
                "exit_code": self.exit_code,
                "limits": {"cpu_seconds": int(lim.get("cpu_seconds", 0)), "memory_mb": int(lim.get("memory_mb", 0)),
                           "wall_seconds": int(lim.get("wall_seconds", 0)), "disk_mb": int(lim.get("disk_mb", 0))},
                "network_attempts": [str(a) for a in self.network_attempts], "killed": self.killed,
                "write_attempts": [str(a) for a in self.write_attempts]}

    @classmethod
    def from_dict(cls, d: dict | None) -> "SandboxInfo | None":
        if d is None:
            return None
        return cls(d["isolation"], d["network"], d["wall_seconds"], d.get("exit_code"), d.get("limits", {}),
                   list(d.get("network_attempts", [])), d.get("killed"), list(d.get("write_attempts", [])))


@dataclass
class DynamicResult:
    mode: str                                   # "reference" | "script"
    script: str | None = None
    ledger: dict = field(default_factory=dict)
    reported: dict = field(default_factory=dict)
    reconstructed: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    agreement: list[Agreement] = field(default_factory=list)
    sandbox: SandboxInfo | None = None

    def condition_verdicts(self) -> dict[str, Verdict | None]:
        return {c: self.verdict_of(c) for c in ("C1", "C2", "C3", "C4")}

    def overall(self) -> Verdict:
        return Verdict.worst(*(i.verdict for i in [*self.checks, *self.probes])) or Verdict.PASS

    def verdict_of(self, condition: str) -> Verdict | None:
        """Worst verdict of one condition, including DATA and BYTES (which the verdict table leaves out)."""
        return Verdict.worst(*(i.verdict for i in [*self.checks, *self.probes] if i.condition == condition))

    def to_dict(self) -> dict:
        led = self.ledger or {}
        return {
            "mode": self.mode,
            "script": self.script,
            "ledger": {"positions": int(led.get("positions", 0)), "events": int(led.get("events", 0)),
                       "score_events": int(led.get("score_events", 0)),
                       "update_events": int(led.get("update_events", 0)),
                       "complete": bool(led.get("complete", False)), "path": led.get("path")},
            "reported": {"val_loss": _num(self.reported.get("val_loss")), "val_bpb": _num(self.reported.get("val_bpb"))},
            "reconstructed": {"val_loss": _num(self.reconstructed.get("val_loss")),
                              "val_bpb": _num(self.reconstructed.get("val_bpb"))},
            "leak": _leak(self.reconstructed.get("leak")),
            "checks": [c.to_dict() for c in self.checks],
            "probes": [p.to_dict() for p in self.probes],
            "timeline": self.timeline.to_dict(),
            "agreement": [a.to_dict() for a in self.agreement],
            "sandbox": self.sandbox.to_dict() if self.sandbox else None,
            "verdict": {"conditions": {c: v and v.value for c, v in self.condition_verdicts().items()},
                        "overall": self.overall().value},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicResult":
        return cls(
            mode=d["mode"], script=d.get("script"), ledger=dict(d.get("ledger") or {}),
            reported=dict(d.get("reported") or {}),
            reconstructed={**(d.get("reconstructed") or {}), "leak": d.get("leak")},
            checks=[Check.from_dict(c) for c in d.get("checks", [])],
            probes=[Probe.from_dict(p) for p in d.get("probes", [])],
            timeline=Timeline.from_dict(d.get("timeline") or {}),
            agreement=[Agreement(a["condition"], a.get("static"), a.get("dynamic")) for a in d.get("agreement", [])],
            sandbox=SandboxInfo.from_dict(d.get("sandbox")),
        )


def _leak(leak: dict | None) -> dict | None:
    if not leak:
        return None
    return {**{k: _num(leak.get(k)) for k in ("reported_loss", "first_look_loss", "reported_bpb", "first_look_bpb",
                                              "worth_bpb")}, "sentence": str(leak.get("sentence", ""))}
