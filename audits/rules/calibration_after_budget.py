"""PG-CAL-001: quantization calibration reading training data after the wallclock-capped training loop."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    CALIB,
    TRAIN,
    TRAIN_READ,
    UPDATE,
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    common_split,
    merge_related,
    names_in,
    trail,
)

_LINE_BREAK = re.compile(r"\r\n?|\n")  # how positions number lines


def has_reserve(prog) -> bool:
    """`max_wallclock_ms -= gptq_reserve_ms` or any assignment combining a wallclock and a reserve name.

    Only assignments on a line whose text contains a reserve name can name one, so only those are read."""
    words = prog.identifiers()
    reserve = [x for x in words if P.RESERVE.search(x)]
    if not (reserve and any(P.WALLCLOCK.search(x) for x in words)):
        return False
    lines = {i for i, text in enumerate(_LINE_BREAK.split(prog.text), 1) if any(r in text for r in reserve)}
    for n in prog.nodes_of(cst.Assign, cst.AugAssign, cst.AnnAssign):
        start, _, end, _ = prog.positions.range(n)
        if lines.isdisjoint(range(start, end + 1)):
            continue
        names = names_in(n)
        if any(P.WALLCLOCK.search(x) for x in names) and any(P.RESERVE.search(x) for x in names):
            return True
    return False


class CalibrationAfterBudget(Rule):
    """Flags GPTQ/Hessian calibration on training data that runs after the training loop used the full wallclock.

    What it flags:
        A training loop capped by wallclock (`if elapsed > max_wallclock_ms: break`) followed by a calibration
        read of training data (`collect_hessians(model, train_loader)`, `train_loader.next_batch(...)`), with no
        reserve subtracted from the wallclock budget anywhere in the script.

    Why it is illegal:
        Artifact creation is not untimed: everything must fit into training (600 s) or evaluation. Calibration
        on training data after the loop stopped at the cap reads training data outside the training budget.

    Example:
        while True:
            ...; if approx_training_time_ms > max_wallclock_ms: break
        hessians = collect_hessians(model, train_loader, n_batches=64)

    Use instead:
        `max_wallclock_ms -= gptq_reserve_seconds * 1000` before training (as #634, #1047, #1868 do), or
        self-generated calibration data.
    """

    id = "PG-CAL-001"
    name = "calibration-after-budget"
    conditions = (Condition.CAL,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Calibrates on training data after the training budget is spent"
    ruling = Ruling(
        "valerio-oai",
        "PR #606 (also #593, #615, #626, #639, #656, #706, #1028); PR #609",
        "I would not regard 'artifact creation' as untimed (otherwise you'd be able to sneak in arbitrary compute "
        "there), so everything needs to fit into either training or eval, and this has to fall under training "
        "to be legal.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        max_wallclock_ms = 600_000 - gptq_reserve_ms
        train_loader = DistributedTokenLoader(args.train_files)
        while True:
            x, y = train_loader.next_batch()
            model(x, y).backward()
            opt.step()
            if elapsed_ms() > max_wallclock_ms:
                break
        hessians = collect_hessians(model, train_loader)
    """)]
    INVALID = [Invalid("""
        max_wallclock_ms = 600_000
        train_loader = DistributedTokenLoader(args.train_files)
        while True:
            x, y = train_loader.next_batch()
            model(x, y).backward()
            opt.step()
            if elapsed_ms() > max_wallclock_ms:
                break
        hessians = collect_hessians(model, train_loader)
    """, line=9)]

    def check(self, ctx):
        if has_reserve(ctx.prog):
            return
        for flow in ctx.flows:
            by_loop: dict[int, list] = {}
            for o in flow.occs:
                for lp in o.loops:
                    by_loop.setdefault(lp.uid, []).append(o)
            for uid, (loop, _path, _chain) in flow.loops.items():
                inside = by_loop.get(uid, [])
                if not any(o.kind == UPDATE and TRAIN in o.taint for o in inside):
                    continue
                loop_text = ctx.prog.node_text(loop.node)
                if not P.WALLCLOCK.search(loop_text) or "break" not in loop_text:
                    continue
                end = max(o.order for o in inside)
                for o in flow.occs[end + 1:]:
                    if (o.kind == CALIB and TRAIN in o.taint) or (
                            o.kind == TRAIN_READ and any(P.CALIB_CALL.search(q) for q in o.chain)):
                        split = common_split(inside[-1], o)
                        yield Hit(None, "calibration reads training data after the wallclock-capped training loop; "
                                        "no reserve is subtracted from the training budget",
                                  line=split[1] if split else o.line,
                                  related=merge_related([(loop.line, "training loop stops at the wallclock cap")],
                                                        trail(ctx.prog, o, TRAIN)))
                        break
