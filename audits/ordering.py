"""Score-versus-update ordering over a linearized run: the shared analysis behind the TTT and cache rules.

The legal shape (PG-TTT-005) is: in each iteration of a loop over data, the tokens are scored first and
trained on after. Everything else is classified here once, so each rule only picks its own kind:

- `epoch`: a repeat loop (epochs/passes over the same data) encloses both a score and an update (PG-TTT-003);
- `pre_eval`: an update on validation tokens with no score before it, and a score after it (PG-TTT-001);
  not when, in the data loop around both, the update trains on an earlier iteration's already scored chunk
  (`prev` assigned after the score, or `val_tokens[(i - 1) * C : i * C]` / `chunks[i - 1]`): the lagged spelling;
- `pre_quant`: the same, with quantization/serialization in between (PG-TTT-002);
- `warmup_restored`: the same, but weights/optimizer are restored before scoring (PG-TTT-006, gray);
- `rescore`: tokens scored, trained on, then scored again (PG-TTT-004);
- `ensemble`: the same, but the reported total blends the stashed first-look scores with the post-update ones
  (adapters trained on a batch scoring that batch again as ensemble members: PG-TTT-007);
- `cache_rescore`: tokens scored, fed to a cache, then scored again through that cache (PG-NG-003).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from audits.flow import CACHE_UPDATE, OPT_NEW, QUANT, RESET, RESTORE, SCORE, VAL, Flow, Occ, common_split, exclusive
from audits.functions import func_nodes_of
from audits.syntax import assignment_edges, backward_closure, block_of, names_in
from audits.walk import children, walk


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
    cached = flow.memo.get("orderings")
    if cached is not None:
        return cached
    all_scores = flow.val_scores()
    scores = [s for s in all_scores if not s.ev.detail.get("assign")]  # accumulations: what gets reported
    updates = [u for u in flow.val_updates() if not u.slot]
    out, covered = _epoch_orderings(flow, all_scores, scores, updates)
    out += _update_orderings(flow, all_scores, scores, updates, covered)
    out += _cache_orderings(flow, scores)
    flow.memo["orderings"] = out
    return out


def _epoch_orderings(flow: Flow, all_scores: list[Occ], scores: list[Occ],
                     updates: list[Occ]) -> tuple[list[Ordering], set[int]]:
    """Repeat loops that score and update the same data, and the events they cover (reported once, there)."""
    out: list[Ordering] = []
    covered: set[int] = set()
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

    return out, covered


def _update_orderings(flow: Flow, all_scores: list[Occ], scores: list[Occ], updates: list[Occ],
                      covered: set[int]) -> list[Ordering]:
    """Each update on validation tokens against the scores around it: pre-eval, pre-quant, warm-up, re-score."""
    out: list[Ordering] = []
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
        later = [s for s in scores if s.order > u.order and not exclusive(s, u) and s.order not in covered
                 and (not u.ev.detail.get("contained") or s.chain[: len(u.chain)] == u.chain)]
        # the innermost data loop around both the update and its first later score
        shared = next((lp for lp in reversed(u.loops) if lp.kind == "data" and later and _inside(later[0], lp.uid)), None)
        if shared is not None and not earlier and _loop_carried(flow, u, later[0], shared):
            # trains on data of an earlier, already scored iteration of that loop: not pre-eval for its scores
            later = [s for s in later if not _inside(s, shared.uid)]
        if not later:
            continue
        dominated = any(L is None or _inside(s, L.uid) for s in earlier)
        s2 = later[0]
        between = [o for o in flow.occs if u.order < o.order < s2.order and not exclusive(o, u)]
        # quantization before any later score: a diagnostic eval right after the adaptation often comes first,
        # and the reported score of the quantized model after it
        quant = [o for o in flow.occs if o.kind == QUANT and u.order < o.order < later[-1].order and not exclusive(o, u)]
        if not dominated and quant:
            kind, line = "pre_quant", u.line
            s_q = next(s for s in later if s.order > quant[0].order)
            related = [(quant[0].line, "quantization/serialization after the adaptation"),
                       (s_q.line, "the same validation tokens are scored by the quantized model here")]
        elif dominated or earlier:
            kind, line = "rescore", _split_line(u, s2)
            related = [(earlier[-1].line, "tokens scored here first"), (u.line, "then trained on here")]
            blend = _blended_report(flow, all_scores, u, s2)
            if blend is not None:
                kind = "ensemble"
                related += [(s2.line, f"the trained adapters score the same tokens again into `{s2.ev.name}`"),
                            (blend.line, f"`{blend.ev.name}` mixes those scores with the first-look ones")]
        else:
            restores = [o for o in between if o.kind in (RESTORE, OPT_NEW)]
            related = [(s2.line, "the same validation tokens are scored later here")]
            if len({_restore_target(r) for r in restores}) >= 2:
                kind = "warmup_restored"
                related += [(r.line, "state restored before scoring") for r in restores[:2]]
            else:
                kind = "pre_eval"
            line = u.line
        if (kind, line) not in seen_lines:
            seen_lines.add((kind, line))
            out.append(Ordering(kind, line, u, s2, related))

    return out


def _cache_orderings(flow: Flow, scores: list[Occ]) -> list[Ordering]:
    """Caches filled from validation tokens, then the same tokens scored again through the cache."""
    out: list[Ordering] = []
    seen_lines: set[tuple[str, int]] = set()
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
    return out


def _blended_report(flow: Flow, all_scores: list[Occ], u: Occ, s2: Occ) -> Occ | None:
    """The reported accumulation after `s2` whose value is computed from both scores stored before the update
    (`own_nll[...] = nll` in the score-first pass) and scores stored after it (the re-scoring pass): an ensemble of
    first-look and post-update predictions, which needs the stash of the first look to exist at all."""
    before = {s.ev.name for s in all_scores if s.order < u.order and not exclusive(s, u)}
    after = {s.ev.name for s in all_scores if u.order < s.order and not exclusive(s, u)}
    for s in all_scores:
        if s.order <= s2.order or s.ev.detail.get("assign") or exclusive(s, u):
            continue
        edges = [e for a in func_nodes_of(s.ev.func, cst.Assign, cst.AugAssign) for e in assignment_edges(a)]
        reads = backward_closure(_names(s) - {s.ev.name}, edges)
        first, second = (before - after) & reads, (after - before) & reads
        if first and second:
            return s
    return None


def _loop_carried(flow: Flow, u: Occ, s: Occ, L) -> bool:
    """Lagged score-first: in L's body the update comes before the score, but what it trains on is data of an
    earlier, already scored iteration. Every validation-tainted name the update's statement reads must be either
    (a) assigned in L's body only after the score's statement (`prev = chunk` at the bottom; before the loop
    only `prev = None`), or (b) a loop-invariant tensor read only as `val_tokens[(i - 1) * C : i * C]` /
    `chunks[i - 1]`, under a guard on the loop variable (`if i > 0:`). Anything else keeps today's verdict."""
    entry = flow.loops.get(L.uid)
    func = flow.prog.funcs.get(L.func)
    if entry is None or func is None:
        return False
    loop, lpath, _chain = entry
    if len(u.path) <= len(lpath) or len(s.path) <= len(lpath):
        return False
    stmts = list(block_of(loop.node))
    if not stmts:
        return False
    starts = [flow.prog.line(st) for st in stmts]

    def index_of(line: int) -> int:
        return max((k for k, ln in enumerate(starts) if ln <= line), default=-1)

    ui, si = index_of(u.path[len(lpath)][2]), index_of(s.path[len(lpath)][2])
    if ui < 0 or si < 0 or ui >= si:
        return False
    S = stmts[ui]
    loop_vars = set(names_in(loop.node.target)) if type(loop.node) is cst.For else set()
    parent = _parents(S)
    reads = _name_reads(S, _assigned(S) | loop_vars, parent)
    local = flow.loop_locals.get(L.uid)
    evidence = False
    for name, nodes in sorted(reads.items()):
        if VAL not in flow.prog.expr_taint(nodes[0], func, local):
            continue
        data = [n for n in nodes if _data_read(n, parent)]  # not `prev is not None`, `num_chunks - 1`, `x.numel()`
        if not data:
            continue
        where = [k for k, st in enumerate(stmts) if name in _assigned(st)]
        if where:
            # (a) carried from a later statement of the previous iteration
            if min(where) <= si or not _carried_from_score(func, loop, name, stmts[si]):
                return False
        elif not _previous_slices(S, data, parent, loop_vars):
            return False  # (b) fails: not only an earlier iteration's part of a loop-invariant tensor
        evidence = True
    return evidence


def _assigned(node) -> set[str]:
    out: set[str] = set()
    for n in walk(node):
        if type(n) is cst.Assign:
            for t in n.targets:
                out |= _target_names(t.target)
        elif type(n) in (cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor):
            out |= _target_names(n.target)
        elif type(n) is cst.WithItem and n.asname is not None:
            out |= _target_names(n.asname.name)
        elif type(n) is cst.NamedExpr:
            out |= _target_names(n.target)
    return out


def _parents(node) -> dict[int, cst.CSTNode]:
    parent: dict[int, cst.CSTNode] = {}
    for n in walk(node):
        for c in children(n):
            parent[id(c)] = n
    return parent


def _name_reads(S, skip: set[str], parent: dict[int, cst.CSTNode]) -> dict[str, list[cst.Name]]:
    """The names a statement reads (not attribute names, keywords, or what it binds itself)."""
    reads: dict[str, list[cst.Name]] = {}
    for n in walk(S):
        p = parent.get(id(n))
        if type(n) is not cst.Name or n.value in skip or (type(p) is cst.Attribute and p.attr is n) or \
                (type(p) is cst.Arg and p.keyword is n):
            continue
        reads.setdefault(n.value, []).append(n)
    return reads


def _carried_from_score(func, loop, name: str, score_stmt) -> bool:
    """On the first iteration `name` must not hold validation data yet (`prev = None` before the loop), and what
    the loop puts in it must be what the score's statement read (`prev = chunk`), not a chunk still to be scored."""
    in_loop = {id(n) for n in walk(loop.node)}
    scored_reads = {n.value for n in walk(score_stmt) if type(n) is cst.Name}
    for a in func_nodes_of(func, cst.Assign):
        if not any(name in _target_names(t.target) for t in a.targets):
            continue
        if id(a) not in in_loop:
            if not (type(a.value) is cst.Name and a.value.value == "None"):
                return False
        elif any(type(t.target) is not cst.Name for t in a.targets) or \
                type(a.value) is not cst.Name or a.value.value not in scored_reads:
            return False
    return True


def _previous_slices(S, data: list[cst.Name], parent: dict[int, cst.CSTNode], loop_vars: set[str]) -> bool:
    """Every read is `name[<previous-iteration index>]`, under a guard on the loop variable (on the first
    iteration `i - 1` is -1, the last chunk)."""
    guarded = type(S) is cst.If and bool(names_in(S.test) & loop_vars)
    for n in data:
        p = parent.get(id(n))
        if not (type(p) is cst.Subscript and p.value is n):
            return False  # the tensor itself (an argument, a view): cannot tell which part is read
        if not loop_vars or not guarded or not _previous_index(p, loop_vars):
            return False
    return True


_META_ATTRS = frozenset({"param_groups", "step", "zero_grad", "numel", "size", "shape", "dim", "ndim", "device",
                         "dtype", "state_dict", "parameters", "named_parameters", "train", "eval", "item"})


def _data_read(n, parent: dict) -> bool:
    """Does this occurrence of a name read its data (not a size, a comparison, a call of it, an optimizer knob)?"""
    p = parent.get(id(n))
    if type(p) in (cst.BinaryOperation, cst.Comparison, cst.ComparisonTarget, cst.UnaryOperation, cst.BooleanOperation):
        return False
    if type(p) is cst.Attribute and p.value is n and p.attr.value in _META_ATTRS:
        return False
    return not (type(p) is cst.Call and p.func is n)


def _target_names(t) -> set[str]:
    if type(t) is cst.Name:
        return {t.value}
    if type(t) in (cst.Tuple, cst.List):
        out: set[str] = set()
        for e in t.elements:
            out |= _target_names(e.value)
        return out
    if type(t) is cst.StarredElement:
        return _target_names(t.value)
    return set()


def _minus_const(node, loop_vars: set[str]) -> bool:
    return any(type(n) is cst.BinaryOperation and type(n.operator) is cst.Subtract and type(n.left) is cst.Name
               and n.left.value in loop_vars and type(n.right) is cst.Integer and int(n.right.value.replace("_", "")) > 0
               for n in walk(node))


def _plus_loop_var(node, loop_vars: set[str]) -> bool:
    return any(type(n) is cst.BinaryOperation and type(n.operator) is cst.Add and
               any(type(x) is cst.Name and x.value in loop_vars for x in (n.left, n.right)) for n in walk(node))


def _previous_index(sub, loop_vars: set[str]) -> bool:
    """`x[i - 1]`, `x[(i - 1) * C : i * C]` (or `: i * C + 1`, `: i`): an element/slice of an earlier iteration."""
    if len(sub.slice) != 1:
        return False
    sl = sub.slice[0].slice
    if type(sl) is cst.Index:
        return _minus_const(sl.value, loop_vars) and not _plus_loop_var(sl.value, loop_vars)
    if type(sl) is not cst.Slice or sl.lower is None or sl.step is not None:
        return False
    if not _minus_const(sl.lower, loop_vars) or _plus_loop_var(sl.lower, loop_vars):
        return False
    up = sl.upper
    if up is None:  # `x[(i-1)*C:]` runs to the end: not only the previous chunk
        return False
    if type(up) is cst.Name:
        return up.value in loop_vars
    if type(up) is cst.BinaryOperation and type(up.operator) is cst.Add and type(up.right) is cst.Integer and \
            up.right.value == "1":
        up = up.left
    return type(up) is cst.BinaryOperation and type(up.operator) is cst.Multiply and \
        any(type(x) is cst.Name and x.value in loop_vars for x in (up.left, up.right)) and \
        not _plus_loop_var(up, loop_vars)


def _encloses(outer: int, inner: int, occs: list[Occ]) -> bool:
    for o in occs:
        uids = [lp.uid for lp in o.loops]
        if outer in uids and inner in uids and uids.index(outer) < uids.index(inner):
            return True
    return False


def _names(o: Occ) -> set[str]:
    from audits.syntax import names_in

    value = o.ev.detail.get("value")
    return names_in(value) if value is not None else set()


def _uses_name(flow: Flow, s: Occ, name: str) -> bool:
    """Does the scoring run through a function that touches the cache `name`?"""
    from audits.syntax import names_in

    for q in s.chain:
        f = flow.prog.funcs.get(q)
        if f is not None and q != "<module>" and any(name in names_in(stmt) for stmt in f.body):
            return True
    return False


def _restore_target(o: Occ) -> str:
    """Which state a restore puts back: the model or the optimizer (a helper is judged by the calls in its body)."""
    name = o.ev.name.lower()
    if o.kind == OPT_NEW or "opt" in name:
        return "optimizer"
    return "model"


__all__ = ["Ordering", "analyze", "SCORE"]
