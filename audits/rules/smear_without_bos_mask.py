"""PG-BOS-001: previous-token mixing (SmearGate) that crosses document boundaries."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    dotted,
    func_nodes_of,
    names_in,
    root_name,
    walk,
)


def _is_prev_shift(node: cst.Subscript) -> bool:
    """`x[:, :-1]` (or `x[:, :-1, :]`): the previous position along the sequence axis."""
    if len(node.slice) < 2:
        return False
    first, second = node.slice[0].slice, node.slice[1].slice
    if not (type(first) is cst.Slice and first.lower is None and first.upper is None):
        return False
    return type(second) is cst.Slice and second.lower is None and type(second.upper) is cst.UnaryOperation \
        and type(second.upper.expression) is cst.Integer and second.upper.expression.value == "1"


def _hashes(stmt: cst.CSTNode) -> bool:
    for n in walk(stmt):
        if type(n) is cst.BinaryOperation and type(n.operator) in (cst.BitXor, cst.Modulo, cst.BitAnd):
            return True
        if type(n) is cst.Call and P.last_part(dotted(n.func)) in ("bitwise_xor", "remainder", "fmod"):
            return True
    return False


class SmearWithoutBOSMask(Rule):
    """Warns about mixing the previous position's hidden state into the current one without a BOS mask.

    What it flags:
        A shift-mix such as `x = cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)` or `F.pad(x[:, :-1], ...)`
        on hidden states, in a function/class that never masks document starts (`input_ids != BOS_ID`).
        Shifts of token ids (BigramHash inputs) are not flagged.

    Why it is illegal:
        At a document start the mix pulls in the last token of the previous document. cocohearts' audit of
        #1797 blocked this; Issue #1988 disputes it as a custom rule — hence a warning, not a failure.

    Example:
        g = torch.sigmoid(self.gate(x[:, 1:]))
        x = torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)

    Use instead:
        `bos_mask = (input_ids[:, 1:] != BOS_ID)`; `g = g * bos_mask[..., None]` before mixing (#1851/#1855).
    """

    id = "PG-BOS-001"
    name = "smear-without-bos-mask"
    conditions = (Condition.C1,)
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    message = "Previous-token mix crosses document boundaries (no BOS mask)"
    ruling = Ruling(
        "cocohearts (Alex Zhao); disputed by ClassicLarry and romeerp",
        "PR #1797 (fixed in #1851/#1855); Issue #1988",
        "current SmearGate crosses document boundaries",
        "contested",
    )
    VALID = [Valid("""
        class SmearGate(nn.Module):
            def forward(self, x, input_ids):
                g = torch.sigmoid(self.gate(x[:, 1:]))
                bos_mask = (input_ids[:, 1:] != BOS_ID).unsqueeze(-1)
                g = g * bos_mask
                return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
        smear = SmearGate()
    """)]
    INVALID = [Invalid("""
        class SmearGate(nn.Module):
            def forward(self, x):
                g = torch.sigmoid(self.gate(x[:, 1:]))
                return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)
        smear = SmearGate()
    """, line=4)]

    def check(self, ctx):
        prog = ctx.prog
        for func in prog.funcs.values():
            if func.qname == "<module>":
                continue
            if not any(_is_prev_shift(s) for s in func_nodes_of(func, cst.Subscript)):
                continue  # every mix the rule flags reads a previous-position slice
            scope = [func] + ([prog.funcs[q] for q in prog.classes.get(func.cls, [])] if func.cls else [])
            identifiers = set().union(*(names_in(f.node) for f in scope))
            if any(P.BOS_MASK.search(x) for x in identifiers):
                continue
            for stmt in func.body:
                if type(stmt) in (cst.FunctionDef, cst.ClassDef):
                    continue
                hit = self._mix(stmt)
                if hit is not None:
                    yield Hit(hit, "mixes the previous position into the current one with no document-boundary "
                                   "mask: the first token of a document sees the previous document")
                    break

    @staticmethod
    def _mix(stmt: cst.CSTNode) -> cst.CSTNode | None:
        if _hashes(stmt):
            return None  # BigramHash keys mix previous token *ids*; they never blend hidden states
        for n in walk(stmt):
            mixed: list[cst.CSTNode] = []
            if type(n) is cst.BinaryOperation and type(n.operator) in (cst.Add, cst.Multiply):
                mixed = [n.left, n.right]
            elif type(n) is cst.Call and P.last_part(dotted(n.func)) == "pad" and n.args:
                mixed = [n.args[0].value]
            for side in mixed:
                if type(side) is cst.Subscript and _is_prev_shift(side) and \
                        not P.TOKEN_IDS.match(root_name(side.value) or ""):
                    return n
                if type(side) is cst.BinaryOperation:
                    for sub in (side.left, side.right):
                        if type(sub) is cst.Subscript and _is_prev_shift(sub) and \
                                not P.TOKEN_IDS.match(root_name(sub.value) or ""):
                            return n
        return None

