"""The trail a person follows from the data to a flagged event: where validation tokens enter, and the calls
that carry them to the update, score or calibration the finding is about. Rules add it to their related lines,
so every output (terminal, JSON, SARIF related locations, HTML) shows how the tokens got there."""
from __future__ import annotations

import libcst as cst

from audits.flow import Occ
from audits.functions import func_nodes_of
from audits.program import Program
from audits.taint import VAL, taint_leaves

MAX_CALLS = 4


def _short(qname: str) -> str:
    return qname.split(".<locals>.")[-1]


def call_trail(occ: Occ) -> list[tuple[int, str]]:
    """Call sites from the entry point down to the event: `main` calls `eval_val_ttt` at line N, ..."""
    out: list[tuple[int, str]] = []
    path = occ.path
    for here, there in zip(path, path[1:]):
        if here[3] != there[3]:
            out.append((here[2], f"`{_short(here[3])}` calls `{_short(there[3])}` here"))
    return out[-MAX_CALLS:]


def val_source(prog: Program, occ: Occ, kind: str = VAL) -> list[tuple[int, str]]:
    """The first assignment, in the functions on the event's call chain (outermost first), whose value is data of
    `kind` by its own words: a validation loader call, a `fineweb_val_*` pattern, `val_data.val_tokens`."""
    for qname in occ.chain:
        func = prog.funcs.get(qname)
        if func is None:
            continue
        for n in func_nodes_of(func, cst.Assign, cst.AnnAssign):
            if n.value is not None and kind in taint_leaves(n.value)[0]:
                what = "validation" if kind == VAL else "training"
                return [(prog.line(n), f"{what} data enters here")]
    return []


def trail(prog: Program, occ: Occ | None, kind: str = VAL) -> list[tuple[int, str]]:
    if occ is None:
        return []
    return val_source(prog, occ, kind) + call_trail(occ)


def merge_related(first: list[tuple[int, str]], extra: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """`first` then `extra`, one entry per line (the rule's own explanation wins)."""
    seen = {line for line, _ in first}
    return list(first) + [(line, msg) for line, msg in extra if line not in seen and not seen.add(line)]
