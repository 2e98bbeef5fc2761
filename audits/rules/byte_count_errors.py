"""PG-BPB-001: errors in the byte lookup tables that inflate the BPB denominator."""
from __future__ import annotations

import re

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
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

_BYTES_TABLE = re.compile(r"(base_bytes|bytes_lut|byte_len|token_bytes|tok_bytes|piece_bytes|nbytes|byte_count_lut)", re.I)
_LEADING = re.compile(r"(leading_space|has_space|space_lut|lead_space)", re.I)
_PIECE_API = re.compile(r"(id_to_piece|IdToPiece|\.decode\(\[|sp\.decode|piece)")
_BYTE_CHECK = re.compile(r"(is_byte|IsByte|<0x|byte_fallback|is_byte_token)")


def _len_encode(node: cst.CSTNode) -> bool:
    return any(type(n) is cst.Call and dotted(n.func) == "len" for n in walk(node))


def _adds_one(node: cst.CSTNode) -> bool:
    return type(node) is cst.BinaryOperation and type(node.operator) is cst.Add and (
        type(node.right) is cst.Integer and node.right.value == "1")


def _byte_branches(func) -> list[cst.If]:
    """`if sp.is_byte(i):` / `if piece.startswith("<0x"):` branches of a table builder."""
    out = []
    for stmt in func.body:
        for n in walk(stmt):
            if type(n) is cst.If and any(type(x) in (cst.Name, cst.Attribute) and
                                             (getattr(x, "value", None) == "is_byte" or
                                              (type(x) is cst.Attribute and x.attr.value in ("is_byte", "IsByte")))
                                             for x in walk(n.test)):
                out.append(n)
    return out


class ByteCountErrors(Rule):
    """Flags byte tables that double count a leading space or size byte-fallback tokens by their text.

    What it flags:
        (1) `base_bytes[i] = len(piece[1:].encode()) + 1` when the evaluation also adds the leading space
        (`+= has_leading_space_lut[tgt] & ~is_boundary_lut[prev]`): the space is counted twice (~17% more bytes).
        (2) A byte table sized with `len(piece.encode())` or `len(sp.decode([i]).encode())` with no
        byte-fallback case, so a `<0xXX>` token counts 6 bytes (or 3 for U+FFFD) instead of 1.

    Why it is illegal:
        BPB divides by the UTF-8 bytes of the validation text; inflating the denominator lowers the score
        without predicting anything better. #1184 was merged and then removed as invalid for this.

    Example:
        base_bytes[i] = len(piece[1:].encode("utf-8")) + 1       # and eval adds the space again

    Use instead:
        The canonical table: skip control/unknown/unused tokens; byte tokens are 1; strip "▁" and set
        has_leading_space; `base_bytes = len(rest.encode("utf-8"))`; add +1 only at eval when the previous token
        is not a boundary.
    """

    id = "PG-BPB-001"
    name = "byte-count-errors"
    conditions = (Condition.BYTES,)
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Byte lookup table inflates the BPB denominator"
    ruling = Ruling(
        "maintainers (removed #1184 as invalid in #1806); dexhunter (Issue #1719)",
        "Issue #1719; PR #1806; closed #1545, #1576, #1632, #1672; Scylla #1143",
        "Double-credited leading space … inflated bytes by ~17%; byte-fallback tokens counted as 3 bytes",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def build_luts(sp, vocab_size):
            base_bytes = [0] * vocab_size
            has_leading_space = [False] * vocab_size
            for i in range(vocab_size):
                if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                    continue
                if sp.is_byte(i):
                    base_bytes[i] = 1
                    continue
                piece = sp.id_to_piece(i)
                if piece.startswith("\\u2581"):
                    has_leading_space[i] = True
                    piece = piece[1:]
                base_bytes[i] = len(piece.encode("utf-8"))
            return base_bytes, has_leading_space
        luts = build_luts(sp, 1024)
    """)]
    INVALID = [Invalid("""
        def build_luts(sp, vocab_size):
            base_bytes = [0] * vocab_size
            has_leading_space = [False] * vocab_size
            for i in range(vocab_size):
                if sp.is_byte(i):
                    base_bytes[i] = 1
                    continue
                piece = sp.id_to_piece(i)
                if piece.startswith("\\u2581"):
                    has_leading_space[i] = True
                    base_bytes[i] = len(piece[1:].encode("utf-8")) + 1
                else:
                    base_bytes[i] = len(piece.encode("utf-8"))
            return base_bytes, has_leading_space
        def count_bytes(tgt, prev, base_bytes, has_leading_space, is_boundary):
            tb = base_bytes[tgt]
            tb += has_leading_space[tgt] & ~is_boundary[prev]
            return tb
        luts = build_luts(sp, 1024)
        print(count_bytes(tgt, prev, *luts, is_boundary))
    """, line=11)]

    def check(self, ctx):
        prog = ctx.prog
        leading_added = any(
            type(n) is cst.AugAssign and type(n.operator) is cst.AddAssign and any(_LEADING.search(x) for x in names_in(n.value))
            or type(n) is cst.BinaryOperation and type(n.operator) is cst.Add and any(_LEADING.search(x) for x in names_in(n.right))
            for n in prog.nodes_of(cst.AugAssign, cst.BinaryOperation))
        for func in prog.funcs.values():
            if not any(dotted(c.func) == "len" for c in func_nodes_of(func, cst.Call)):
                continue  # nothing in it can be sized by len()
            sized = [n for n in func_nodes_of(func, cst.Assign) if _len_encode(n.value)]
            if not sized:
                continue
            text = prog.node_text(func.node) if func.qname != "<module>" else ""
            lut_builder = bool(_PIECE_API.search(text))
            assigns = [n for n in sized if any(_BYTES_TABLE.search(root_name(t.target) or "") or
                                               (lut_builder and type(t.target) is cst.Subscript) for t in n.targets)]
            if not assigns:
                continue
            if leading_added:
                for n in assigns:
                    if _adds_one(n.value):
                        yield Hit(n, "adds 1 for the leading space inside the byte table, and the evaluation adds it "
                                     "again: the space is counted twice")
            if not lut_builder:
                continue
            if not _BYTE_CHECK.search(text):
                yield Hit(assigns[0], "sizes tokens by their piece text with no byte-fallback case: `<0xXX>` tokens "
                                      "count several bytes instead of one")
                continue
            for branch in _byte_branches(func):
                for n in walk(branch.body):
                    if n in assigns:
                        yield Hit(n, "sizes byte-fallback tokens by their text (`<0xXX>` or U+FFFD) instead of 1 byte")
