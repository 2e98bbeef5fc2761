"""SF-EXEC-001: dynamic code the audit cannot see through."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    EXEC_FUNCS,
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    walk,
)


class UnverifiableExec(Rule):
    """Warns about `exec`/`eval`/`compile` of a string the audit cannot resolve statically.

    What it flags:
        Dynamic code whose text is not a literal or a decodable packed payload (`exec(lzma.decompress(
        base64.b85decode("...")))` is decoded and audited; `exec(open(path).read())` or a string built at run
        time is not), and packed payloads that fail to decode or exceed the size cap.

    Why it is illegal:
        It is not illegal by itself, but whatever runs there is invisible to the static audit, so none of C1–C4
        can be confirmed: "cannot verify", never silence. Run the dynamic audit.

    Example:
        exec(compile(open(os.environ["PATCH"]).read(), "patch", "exec"))

    Use instead:
        Put the code in train_gpt.py itself (it counts against the artifact either way), or pack it with a
        static decode chain.
    """

    id = "SF-EXEC-001"
    name = "unverifiable-exec"
    conditions = (Condition.C1, Condition.C2, Condition.C3, Condition.C4)
    severity = Severity.WARNING
    confidence = Confidence.LOW
    message = "Cannot verify: dynamic code the audit cannot resolve"
    ruling = Ruling(
        "scorefirst policy",
        "RULES.md generic detectors: decode exec shims first",
        "Decode lzma/b85/zlib exec shims first. When the analyzer cannot see through a construct, it emits an "
        "explicit low-confidence \"cannot verify\" finding. Never silence.",
        "scorefirst policy",
    )
    VALID = [Valid("""
        import lzma, base64
        exec(lzma.decompress(base64.b85decode(b'{Wp48S^xk9=GL@E0stWa761SMbT8$j0RRqga%paKC?aTOY;12LDGC4pVG7Q3cA!bw00Act-x~aCAGY&-0RR9100dcD')))
        pattern = re.compile("x+")
    """)]
    INVALID = [Invalid("""
        import os
        code = open(os.environ["PATCH_FILE"]).read()
        exec(compile(code, "patch", "exec"))
    """, line=3)]

    def check(self, ctx):
        prog = ctx.prog
        resolved = prog.resolved_execs
        inside_resolved: set[int] = set()
        for n in prog.nodes_of(cst.Call):
            if id(n) in resolved:
                inside_resolved.update(id(x) for x in walk(n, into_defs=True))
        failures = {id(call): why for call, why in prog.unpack_failures}
        for n in prog.nodes_of(cst.Call):
            if not (type(n.func) is cst.Name and n.func.value in EXEC_FUNCS):
                continue
            if id(n) in failures:
                yield Hit(n, f"cannot verify: packed code could not be decoded ({failures[id(n)]})")
            elif id(n) not in inside_resolved:
                yield Hit(n, f"cannot verify: `{n.func.value}` of a string the audit cannot resolve statically")
