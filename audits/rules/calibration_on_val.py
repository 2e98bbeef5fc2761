"""PG-CAL-002: calibrating quantization on validation tokens."""
from __future__ import annotations

from audits.rulekit import (
    CALIB,
    VAL,
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    trail,
)


class CalibrationOnVal(Rule):
    """Flags a calibration call (Hessians, GPTQ, activation statistics) fed validation tokens.

    What it flags:
        `collect_hessians(model, val_tokens)`, `gptq_calibrate(..., val_data)` and similar calls whose
        arguments carry validation tokens.

    Why it is illegal:
        The quantized weights then depend on tokens that have not been scored yet, which breaks
        autoregressivity (C3). Self-generated calibration data (sampled from the model) is legal (#1019 merged).

    Example:
        hessians = collect_hessians(model, val_tokens[:calib_tokens])

    Use instead:
        Calibrate on training data inside the training budget, or on text the model generates itself.
    """

    id = "PG-CAL-002"
    name = "calibration-on-val"
    conditions = (Condition.C3,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Calibrates quantization on validation tokens"
    ruling = Ruling(
        "valerio-oai",
        "PR #728; merged #1019 (self-generated calibration)",
        "You are not allowed to calibrate on eval tokens you haven't already scored: this breaks autoregressivity. "
        "The self-generated calibration data is interesting and probably legal",
        "maintainer ruling",
    )
    VALID = [Valid("""
        calib = generate_autoregressive(model, n_tokens=65536, temperature=0.8)
        hessians = collect_hessians(model, calib)
    """)]
    INVALID = [Invalid("""
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        hessians = collect_hessians(model, val_tokens[:65536])
    """, line=2)]

    def check(self, ctx):
        for flow in ctx.flows:
            for o in flow.occs:
                if o.kind == CALIB and VAL in o.taint:
                    yield Hit(o.ev.node, f"`{o.ev.name}` calibrates on validation tokens", line=o.line,
                              related=trail(ctx.prog, o))
