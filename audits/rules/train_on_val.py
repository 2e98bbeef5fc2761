"""PG-DATA-001: the training loader or stream pointed at validation data."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    TRAIN,
    VAL,
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
    evaluate,
    func_nodes_of,
    root_name,
)


def _resolves_to_val(prog, node: cst.BaseExpression) -> bool:
    """`args.train_files` whose configured value (env default or stated) is a validation glob."""
    value = evaluate(node, prog.config).value
    return isinstance(value, str) and bool(P.VAL_STRING.search(value))


def _val_source(prog, func, arg: cst.BaseExpression) -> bool:
    """The argument carries validation data, and not merely as the parameter of a generic loader class that is
    built once for the training files and once for the validation files."""
    kinds = prog.expr_taint(arg, func)
    if VAL not in kinds:
        return False
    return not (TRAIN in kinds and type(arg) is cst.Name and arg.value in func.params)


class TrainOnVal(Rule):
    """Flags a training data source built from validation files or tokens.

    What it flags:
        A training loader/stream (`DistributedTokenLoader(...)`, `TokenStream(...)`) constructed from validation
        files or tokens, or a training file pattern set to `fineweb_val_*`, e.g. through a `TRAIN_SPLIT_MODE`.

    Why it is illegal:
        Training must use the training split only; training on validation data scores a model that has seen
        the answers ("val-only" training, extra passes over val).

    Example:
        train_loader = DistributedTokenLoader(args.val_files, rank, world_size, device)

    Use instead:
        `DistributedTokenLoader(args.train_files, ...)`; touch validation tokens only in evaluation.
    """

    id = "PG-DATA-001"
    name = "train-on-val"
    conditions = (Condition.DATA,)
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Trains on validation data"
    ruling = Ruling(
        "0hq (Will DePue); cocohearts (Alex Zhao)",
        "PR #44; PR #64; PR #179",
        "did you train on the val set for val-only? that doesnt follow the rules have to be train-only",
        "maintainer ruling",
    )
    VALID = [Valid("""
        train_loader = DistributedTokenLoader(args.train_files, 0, 1)
        val_tokens = load_validation_tokens(args.val_files)
    """)]
    INVALID = [Invalid("""
        train_loader = DistributedTokenLoader(args.val_files, 0, 1)
        val_tokens = load_validation_tokens(args.val_files)
    """, line=1)]

    def check(self, ctx):
        prog = ctx.prog
        found = False
        for func in prog.funcs.values():
            for n in func_nodes_of(func, cst.Assign):
                targets = [root_name(t.target) for t in n.targets]
                if type(n.value) is cst.Call:
                    callee = P.last_part(dotted(n.value.func))
                    is_loader = bool(P.LOADER_CLASS.search(callee)) and not P.VAL_CALL.search(callee)
                    trainish = any(t.startswith(("train", "tr_")) or t in ("loader", "stream") for t in targets)
                    if is_loader and trainish and any(
                            _val_source(prog, func, a.value) or _resolves_to_val(prog, a.value) for a in n.value.args):
                        found = True
                        yield Hit(n, f"training data source `{targets[0]}` is built from validation data")
                elif any(P.TRAIN_NAME.match(t or "") for t in targets) and type(n.value) in (
                        cst.SimpleString, cst.ConcatenatedString, cst.FormattedString, cst.BinaryOperation) \
                        and VAL in prog.expr_taint(n.value, func):
                    found = True
                    yield Hit(n, f"training files `{targets[0]}` point at the validation split")
        if not found:  # the loader built from it is the clearer place to show; without one, the setting is
            yield from self._configured(prog)

    @staticmethod
    def _configured(prog):
        """`train_files = os.environ.get("TRAIN_FILES", ...)` (a class attribute or a local) whose value under the
        stated run environment (`TRAIN_FILES=.../fineweb_val_*.bin` in the run command) is the validation split."""
        for n in prog.nodes_of(cst.Assign):
            if type(n.value) is not cst.Call or len(n.targets) != 1:
                continue
            target = root_name(n.targets[0].target)
            if not P.TRAIN_NAME.match(target or "") or not _resolves_to_val(prog, n.value):
                continue
            keys = [k for k in prog.config.used_keys if k in prog.node_text(n.value)]
            how = f" (as stated for {', '.join(keys)})" if keys else ""
            yield Hit(n, f"training files `{target}` resolve to the validation split{how}: "
                         f"`{evaluate(n.value, prog.config).value}`")
