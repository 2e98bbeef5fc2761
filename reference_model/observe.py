"""The one observation interface of every evaluation: which positions were scored with which NLL by which state,
and which positions fed which update.

A *position* p is an index into the validation token stream; scoring position p means computing
-log p(val[p] | val[:p]) (p >= 1; token 0 is never a target). Positions are given either as a 1-D LongTensor
(aligned with ``nll``) or as a half-open ``(start, stop)`` range. An update's positions are every token index the
update read, as input or as target (position 0, never a target, may be read freely). ``state_version`` starts at
0 for the evaluated artifact and increases by one with every parameter or adapter update, so "scored before
updated on" is ``score version < update version``.

Every evaluation opens with ``on_meta(event="begin", ...)`` declaring its ``state_scope``: ``"global"`` (one state
scores every position; any update reading p before p is scored breaks C3) or ``"per-document"`` (per-document
LoRA: position p in document i, i.e. ``doc_starts[i] < p <= doc_starts[i+1]``, is scored by the base weights plus
adapter ``lora/doc{i}``, and an update breaks C3 only if it touches that adapter). It closes with
``on_meta(event="end", ...)`` carrying the reported totals.

The evaluators call :class:`Tracker`, never the observer directly, so no event can bypass it. Legal modes and the
illegal controls go through the same calls; the controls' extra scoring passes are observed like any other.
"""

from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

import numpy as np
import torch

from .metric import BpbMeter

Positions = Union[torch.Tensor, tuple]


@runtime_checkable
class Observer(Protocol):
    def on_score(self, positions: Positions, nll: torch.Tensor, state_version: int) -> None: ...

    def on_update(self, positions: Positions, touched: list[str], state_version_after: int) -> None: ...

    def on_meta(self, **kw) -> None: ...


class NullObserver:
    def on_score(self, positions: Positions, nll: torch.Tensor, state_version: int) -> None:
        pass

    def on_update(self, positions: Positions, touched: list[str], state_version_after: int) -> None:
        pass

    def on_meta(self, **kw) -> None:
        pass


def as_index(positions: Positions, device=None) -> torch.Tensor:
    if isinstance(positions, tuple):
        return torch.arange(positions[0], positions[1], device=device)
    return positions


class RecordingObserver:
    """Keeps every event in order on the CPU; a reference consumer for tests and for the instrumented evaluator."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.doc_starts: np.ndarray | None = None

    def on_score(self, positions, nll, state_version):
        self.events.append(("score", {"positions": as_index(positions).cpu().numpy(),
                                      "nll": nll.detach().float().cpu().numpy(), "version": state_version}))

    def on_update(self, positions, touched, state_version_after):
        self.events.append(("update", {"positions": as_index(positions).cpu().numpy(), "touched": list(touched),
                                       "version": state_version_after}))

    def on_meta(self, **kw):
        self.events.append(("meta", kw))
        if kw.get("event") == "begin":
            per_doc = kw.get("state_scope") == "per-document"
            self.doc_starts = np.asarray(kw["doc_starts"]) if per_doc else None

    def score_counts(self, n: int) -> np.ndarray:
        counts = np.zeros(n, dtype=np.int64)
        for kind, e in self.events:
            if kind == "score":
                np.add.at(counts, e["positions"], 1)
        return counts

    def first_scores(self, n: int) -> np.ndarray:
        """NLL of each position's first scoring event (NaN where never scored)."""
        out = np.full(n, np.nan)
        for kind, e in self.events:
            if kind == "score":
                fresh = np.isnan(out[e["positions"]])
                out[e["positions"][fresh]] = e["nll"][fresh]
        return out

    def updated_before_scored(self, n: int) -> np.ndarray:
        """Positions >= 1 that fed an update before (or without) their first scoring event: C3 violations.
        Position 0 is never a target, so reading it is always allowed."""
        scored = np.zeros(n, dtype=bool)
        scored[0] = True
        bad = np.zeros(n, dtype=bool)
        for kind, e in self.events:
            if kind == "score":
                scored[e["positions"]] = True
            elif kind == "update":
                p = e["positions"]
                p = p[~scored[p]]
                if self.doc_starts is not None:  # only the scoring document's own adapter matters
                    touched = {int(t.removeprefix("lora/doc")) for t in e["touched"] if t.startswith("lora/doc")}
                    p = p[np.isin(np.searchsorted(self.doc_starts, p, side="left") - 1, list(touched))]
                bad[p] = True
        return np.flatnonzero(bad)


class Tracker:
    """Routes one evaluation's scores and updates through the observer, keeps the state version, and
    accumulates the reported metric (and, on request, the reported NLL of every position)."""

    def __init__(self, observer: Observer | None, bytes_at: torch.Tensor, keep_nll: bool = False):
        self.observer = observer or NullObserver()
        self.version = 0
        self.meter = BpbMeter(bytes_at)
        self.nll = torch.full((bytes_at.numel(),), float("nan"), device=bytes_at.device) if keep_nll else None

    def score(self, positions: Positions, nll: torch.Tensor) -> None:
        """Observe a scoring event and add it to the reported metric."""
        self.observe_score(positions, nll)
        self.report(positions, nll)

    def observe_score(self, positions: Positions, nll: torch.Tensor) -> None:
        self.observer.on_score(positions, nll.detach(), self.version)

    def report(self, positions: Positions, nll: torch.Tensor, nll_scale: float = 1.0) -> None:
        idx = as_index(positions, self.meter.bytes_at.device)
        nll = nll.detach().float()
        self.meter.add(idx, nll, nll_scale)
        if self.nll is not None:
            self.nll[idx] = nll * nll_scale

    def update(self, positions: Positions, touched: list[str]) -> None:
        """Call right after an optimizer step: bumps the state version and observes the update."""
        self.version += 1
        self.observer.on_update(positions, touched, self.version)

    def restart_report(self) -> dict:
        """Return what was reported so far and start the reported metric over (only the re-scoring control)."""
        res = self.meter.result()
        self.meter = BpbMeter(self.meter.bytes_at)
        if self.nll is not None:
            self.nll.fill_(float("nan"))
        return res

    def meta(self, **kw) -> None:
        self.observer.on_meta(**kw)

    def result(self) -> dict:
        out = self.meter.result()
        out["updates"] = self.version
        return out
