"""Score-versus-update ordering over a linearized run: the shared analysis behind the TTT and cache rules.

The legal shape (PG-TTT-005) is: in each iteration of a loop over data, the tokens are scored first and
trained on after. Everything else is classified here once, so each rule only picks its own kind:

- `epoch`: a repeat loop (epochs/passes over the same data) encloses both a score and an update (PG-TTT-003);
- `pre_eval`: an update on validation tokens with no score before it, and a score after it (PG-TTT-001);
- `pre_quant`: the same, with quantization/serialization in between (PG-TTT-002);
- `warmup_restored`: the same, but weights/optimizer are restored before scoring (PG-TTT-006, gray);
- `rescore`: tokens scored, trained on, then scored again (PG-TTT-004);
- `cache_rescore`: tokens scored, fed to a cache, then scored again through that cache (PG-NG-003).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from audits.flow import CACHE_UPDATE, OPT_NEW, QUANT, RESET, RESTORE, SCORE, VAL, Flow, Occ, common_split, exclusive


@dataclass
class Ordering:
    kind: str
    line: int
    update: Occ | None
    score: Occ | None
    related: list[tuple[int, str]] = field(default_factory=list)
    loop_why: str = ""


def _inside(o: Occ, uid: int) -> bool:
    return any(lp.uid == uid for lp in o.loops)


def _split_line(first: Occ, later: Occ) -> int:
    split = common_split(first, later)
    return split[1] if split else later.line


def analyze(flow: Flow) -> list[Ordering]:
    cached = flow.__dict__.get("_ordering")
    if cached is not None:
        return cached
    out: list[Ordering] = []
    all_scores = flow.val_scores()
    scores = [s for s in all_scores if not s.ev.detail.get("assign")]  # accumulations: what gets reported
    updates = [u for u in flow.val_updates() if not u.slot]
    covered: set[int] = set()

    # epoch loops that score and update the same data
    epoch_loops = []
    for uid, (loop, _path, _chain) in flow.loops.items():
        if loop.kind != "repeat":
            continue
        s_in = [s for s in all_scores if _inside(s, uid)]
        u_in = [u for u in updates if _inside(u, uid)]
        if s_in and u_in and any(not exclusive(s, u) for s in s_in for u in u_in):
            epoch_loops.append((uid, loop, s_in, u_in))
    flagged = {uid for uid, *_ in epoch_loops}
    for uid, loop, s_in, u_in in epoch_loops:
        # report the innermost such loop: skip one that encloses another flagged loop
        if any(_encloses(uid, other, s_in) for other in flagged - {uid}):
            continue
        related = [(s_in[0].line, f"scores `{s_in[0].ev.name}` inside the loop"),
                   (u_in[0].line, "optimizer step on the same tokens inside the loop")]
        resets = [o for o in flow.of_kind(RESET) if _inside(o, uid) and o.ev.name in {s.ev.name for s in s_in}]
        related += [(r.line, f"`{r.ev.name}` is reset every pass, so only the last pass is reported") for r in resets[:2]]
        out.append(Ordering("epoch", loop.line, u_in[0], s_in[0], related, loop.why))
    for uid, loop, s_in, u_in in epoch_loops:
        covered.update(o.order for o in flow.occs if _inside(o, uid))
    # the reported total written after the epoch loop belongs to the same finding
    for uid, loop, s_in, u_in in epoch_loops:
        names = {s.ev.name for s in s_in}
        for s in scores:
            if s.order > max(o.order for o in s_in) and not _inside(s, uid):
                value_names = {n for n in _names(s)}
                if value_names & names:
                    covered.add(s.order)

    seen_lines: set[tuple[str, int]] = set()
    for u in updates:
        if u.order in covered:
            continue
        L = u.innermost("data")
        # a score counts as "before" only if it is not inside a loop the update is outside of: periodic
        # validation inside the training loop is a diagnostic, not the s0 of this update
        u_loops = {lp.uid for lp in u.loops}
        earlier = [s for s in scores if s.order < u.order and not exclusive(s, u) and s.order not in covered
                   and {lp.uid for lp in s.loops} <= u_loops]
        later = [s for s in scores if s.order > u.order and not exclusive(s, u) and s.order not in covered]
        if not later:
            continue
        dominated = any(L is None or _inside(s, L.uid) for s in earlier)
        s2 = later[0]
        between = [o for o in flow.occs if u.order < o.order < s2.order and not exclusive(o, u)]
        quant = [o for o in between if o.kind == QUANT]
        if not dominated and quant:
            kind, line = "pre_quant", u.line
            related = [(s2.line, "the same validation tokens are scored later here"),
                       (quant[0].line, "quantization/serialization between the update and the score")]
        elif dominated or earlier:
            kind, line = "rescore", _split_line(u, s2)
            related = [(earlier[-1].line, "tokens scored here first"), (u.line, "then trained on here")]
        else:
            restores = [o for o in between if o.kind in (RESTORE, OPT_NEW)]
            related = [(s2.line, "the same validation tokens are scored later here")]
            if len({_restore_target(r) for r in restores}) >= 2 or any(_restore_target(r) == "both" for r in restores):
                kind = "warmup_restored"
                related += [(r.line, "state restored before scoring") for r in restores[:2]]
            else:
                kind = "pre_eval"
            line = u.line
        if (kind, line) not in seen_lines:
            seen_lines.add((kind, line))
            out.append(Ordering(kind, line, u, s2, related))

    # caches filled from validation tokens, then the same tokens scored again through the cache
    for c in flow.of_kind(CACHE_UPDATE):
        if VAL not in c.taint:
            continue
        L = c.innermost("data")
        earlier = [s for s in scores if s.order < c.order and not exclusive(s, c)]
        later = [s for s in scores if s.order > c.order and not exclusive(s, c) and
                 (L is None or not _inside(s, L.uid)) and _uses_name(flow, s, c.ev.name)]
        if not earlier or not later:
            continue
        line = _split_line(c, later[0])
        key = ("cache_rescore", line)
        if key not in seen_lines:
            seen_lines.add(key)
            out.append(Ordering("cache_rescore", line, c, later[0], [
                (earlier[0].line, "first pass scores here"), (c.line, "cache filled from the scored tokens here")]))
    flow.__dict__["_ordering"] = out
    return out


def _encloses(outer: int, inner: int, occs: list[Occ]) -> bool:
    for o in occs:
        uids = [lp.uid for lp in o.loops]
        if outer in uids and inner in uids and uids.index(outer) < uids.index(inner):
            return True
    return False


def _names(o: Occ) -> set[str]:
    from audits.program import names_in

    value = o.ev.detail.get("value")
    return names_in(value) if value is not None else set()


def _uses_name(flow: Flow, s: Occ, name: str) -> bool:
    """Does the scoring run through a function that touches the cache `name`?"""
    from audits.program import names_in

    for q in s.chain:
        f = flow.prog.funcs.get(q)
        if f is not None and q != "<module>" and any(name in names_in(stmt) for stmt in f.body):
            return True
    return False


def _restore_target(o: Occ) -> str:
    """Which state a restore puts back: the model, the optimizer, or (re-creating both) both."""
    name = o.ev.name.lower()
    if o.kind == OPT_NEW or "opt" in name:
        return "optimizer"
    if o.ev.name.startswith("restore") or o.ev.name.startswith("reset_state"):
        return "both"
    return "model"


__all__ = ["Ordering", "analyze", "SCORE"]
