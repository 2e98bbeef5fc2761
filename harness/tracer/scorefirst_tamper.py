"""Tamper evidence for the tracer: is the instrumentation still in place, and did the weights change unseen?

The tracer runs inside the script's process, so code crafted against it can switch it off: leave the forward
observer's TorchFunctionMode (``torch._C.DisableTorchFunction()``, popping the mode stack), remove the global
module and optimizer hooks, swap ``torch.nn.functional`` members or the tracer's own functions. None of that can be
prevented from inside; it can be noticed. :class:`Integrity` remembers what ``install()`` put in place and says
what is no longer there — the observer mode at every module forward (cheap), everything at every optimizer step
and the end of the run, everything but the mode (suspended while the observer's handler runs) at every new
scoring forward. :class:`Spans` fingerprints the traced parameters' content whenever
the tracer records a new state version and compares it at scoring forwards (the first of each version, the first
after each backward pass, every 32nd) and at the end of the scoring span (the next optimizer step, the end of the
run): content that changed while no update was recorded is an unobserved update.

Each finding becomes a META ``tamper`` event; the harness fails a run that has one (``harness.dynamic``). A script
written to defeat these checks too (forging ledger files it can write, replacing this module's objects) is named by
the static rule SF-TAMPER-001; the sandbox, not the tracer, is what contains it.
"""

from __future__ import annotations

import weakref

from scorefirst_state import fingerprints


class Integrity:
    """Identity snapshot of the instrumentation: the observer mode, hook handles, watched attributes."""

    def __init__(self, torch, mode, handles: list, watched: list[tuple[object, str]]):
        self.torch = torch
        self.mode = mode
        self.handles = list(handles)
        self.watched = [(owner, name, getattr(owner, name, None)) for owner, name in watched]
        C = torch._C  # looked up once: the mode check runs at every module forward
        self._enabled = getattr(C, "_is_torch_function_mode_enabled", None)
        self._depth = getattr(C, "_len_torch_function_stack", None)
        self._at = getattr(C, "_get_function_stack_at", None)

    def mode_problem(self) -> str | None:
        """Whether the observer still sees torch functions (cheap: called at every module forward)."""
        if self._enabled is None or self._depth is None or self._at is None:
            return None
        if not self._enabled():
            return "torch-function modes are disabled (torch._C.DisableTorchFunction or equivalent)"
        at, mode = self._at, self.mode
        for i in range(self._depth()):
            if at(i) is mode:
                return None
        return "the tracer's TorchFunctionMode was removed from the mode stack"

    def problems(self, mode: bool = True) -> list[tuple[str, str]]:
        """(kind, detail) of everything that is no longer as installed; ``mode=False`` inside the observer's own
        handler, where torch suspends the mode stack."""
        out = []
        p = self.mode_problem() if mode else None
        if p:
            out.append(("mode", p))
        for h in self.handles:
            ref = getattr(h, "hooks_dict_ref", None)
            hooks = ref() if ref is not None else None
            if hooks is None or h.id not in hooks:
                out.append(("hook", "a global hook of the tracer was removed"))
                break
        for owner, name, obj in self.watched:
            if getattr(owner, name, None) is not obj:
                label = getattr(owner, "__name__", type(owner).__name__)
                out.append(("patched", f"{label}.{name} was replaced at run time"))
        return out


class Spans:
    """Content fingerprints of the traced tensors as of the newest state version, compared later.

    ``mark`` when the tracer records a new version (an optimizer step, an in-place change or a restore), or at the
    first scoring forward of a version it has none for; ``changed`` when ``due``: at the first scoring forward of
    each version, the first after each backward pass and every ``EVERY``-th one (a content fingerprint costs about
    one pass over the weights, so not at every forward), and at the end of each scoring span (the next optimizer
    step, the end of the run: tensors already freed by then cannot be compared)."""

    EVERY = 32

    def __init__(self, torch):
        self.torch = torch
        self.version: int | None = None
        self.fps: dict[int, tuple] = {}
        self.verified = False
        self.looks = 0

    def mark(self, version: int, tensors: dict) -> None:
        ids = list(tensors)
        self.version, self.verified = version, False
        self.fps = {i: (weakref.ref(tensors[i]), fp) for i, fp in zip(ids, fingerprints(self.torch,
                                                                                        [tensors[i] for i in ids]))}

    def due(self) -> bool:
        """Whether this scoring forward compares the content (see the class docstring)."""
        self.looks += 1
        if self.verified and self.looks % self.EVERY:
            return False
        self.verified = True
        return True

    def changed(self, version: int) -> list[int]:
        """Ids of the tensors whose content differs from the mark although the state version did not move (after
        the tracer looked for in-place changes). Re-marks, so that one change is reported once."""
        if self.version is None or self.version != version:
            return []
        alive = {i: ref() for i, (ref, _) in self.fps.items()}
        ids = [i for i, t in alive.items() if t is not None]
        now = fingerprints(self.torch, [alive[i] for i in ids])
        out = [i for i, fp in zip(ids, now) if fp != self.fps[i][1]]
        if out:
            self.fps = {i: (self.fps[i][0], fp) for i, fp in zip(ids, now)}
        return out
