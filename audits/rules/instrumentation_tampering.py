"""SF-TAMPER-001: code that reaches into the instrumentation the dynamic audit relies on."""
from __future__ import annotations

import re
from itertools import chain

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
)

# torch internals that switch off or rearrange the torch-function / dispatch mode stacks, or hold the global hooks
_MODE_MEMBERS = re.compile(
    r"^(DisableTorchFunction(Subclass)?|_DisableTorchDispatch|_pop_torch_function_stack|_push_on_torch_function_stack|"
    r"_len_torch_function_stack|_get_function_stack_at|_set_torch_function_mode|_pop_mode(_temporarily)?|"
    r"_push_mode|_disable_current_modes|_unset_dispatch_mode|_set_dispatch_mode|_get_current_function_mode_stack|"
    r"_global_optimizer_(pre|post)_hooks|_global_(forward|backward)(_pre)?_hooks|_global_module_registration_hooks)$")
_TRACE_CALLS = {"sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile",
                "threading.settrace_all_threads", "threading.setprofile_all_threads"}
# objects whose members a submission must not replace while it runs: what the tracer recognises and hooks
_PATCHED_BASES = re.compile(r"^torch\.(nn\.functional|optim(\.[A-Za-z_]\w*)?|autograd|Tensor|nn\.Module|"
                            r"nn\.modules\.module|overrides|_C)$")
_OURS = re.compile(r"scorefirst", re.IGNORECASE)


class InstrumentationTampering(Rule):
    """Flags code that disables, rearranges or replaces what the dynamic audit observes a run through.

    What it flags:
        `torch._C.DisableTorchFunction()` and the other switches of the torch-function and dispatch mode stacks
        (`_pop_torch_function_stack`, `_pop_mode`, `_disable_current_modes` ...), the global optimizer and module
        hook registries (`torch.optim.optimizer._global_optimizer_pre_hooks`), `sys.settrace`/`sys.setprofile`,
        `sys.monitoring`, assigning to (or `setattr`/`delattr` on) members of `torch.nn.functional`, `torch.optim`
        and its optimizers (`torch.optim.Optimizer.step = ...`), `torch.autograd`, `torch.Tensor`, `torch.nn.Module`,
        and any name, import or string that names the audit's own instrumentation (`scorefirst_trace`,
        `SCOREFIRST_TRACE`, `.scorefirst-trace`).

    Why it is illegal:
        The dynamic audit proves C1–C4 from what its tracer sees; code that blinds it (a pre-eval TTT inside
        `DisableTorchFunction`, a swapped `F.embedding`, a removed optimizer-step hook) turns an illegal
        evaluation into a clean-looking trace. A training script needs none of these. Whatever the run does
        under them cannot be verified, so the submission is treated as tampering: fail closed.

    Example:
        with torch._C.DisableTorchFunction():
            ttt_adapt(model, val_tokens)

    Use instead:
        Plain PyTorch: call the functions and optimizers as they are; wrap behaviour in your own modules and
        functions instead of replacing library members at run time.
    """

    id = "SF-TAMPER-001"
    name = "instrumentation-tampering"
    conditions = (Condition.C1, Condition.C2, Condition.C3, Condition.C4)
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Reaches into the instrumentation the audit observes the run through"
    ruling = Ruling(
        "scorefirst policy",
        "docs/dynamic_audit.md, threat model",
        "Never PASS a run whose instrumentation was disturbed: code that disables the torch-function mode stack, "
        "removes the global hooks or monkeypatches what the tracer observes is tampering, and fails closed.",
        "scorefirst policy",
    )
    VALID = [Valid("""
        import sys
        import torch
        import torch.nn.functional as F
        logits = F.linear(h, weight)
        loss = F.cross_entropy(logits.float(), y)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        opt.step()
        model.forward = torch.compile(model.forward)
        sys.setrecursionlimit(10000)
    """)]
    INVALID = [
        Invalid("""
            import torch
            def ttt_adapt(model, opt, val_tokens):
                with torch._C.DisableTorchFunction():
                    loss = model(val_tokens[:-1], val_tokens[1:])
                    loss.backward()
                    opt.step()
            ttt_adapt(model, opt, val_tokens)
        """, line=3),
        Invalid("""
            import torch.nn.functional as F
            F.embedding = lambda ids, weight, *a, **k: weight[ids]
        """, line=2),
        Invalid("""
            import sys
            tracer = sys.modules.get("scorefirst_trace")
        """, line=2),
        Invalid("""
            from torch.optim import Optimizer
            setattr(Optimizer, "step", lambda self, closure=None: None)
        """, line=2),
    ]

    def check(self, ctx):
        prog = ctx.prog
        aliases = _aliases(prog.nodes_of(cst.Import, cst.ImportFrom))
        seen: set[int] = set()
        for node, message in chain(_imports(prog), _attributes(prog, aliases), _calls(prog, aliases),
                                   _assignments(prog, aliases), _mentions(prog)):
            line = prog.line(node)
            if line not in seen:  # one finding per line
                seen.add(line)
                yield Hit(node, message)


def _canonical(aliases: dict[str, str], name: str) -> str:
    head, _, rest = name.partition(".")
    base = aliases.get(head, head)
    return f"{base}.{rest}" if rest else base


def _imports(prog):
    for n in prog.nodes_of(cst.Import, cst.ImportFrom):
        if _OURS.search(prog.node_text(n)):
            yield n, "imports the audit's own instrumentation"
        elif type(n) is cst.ImportFrom and type(n.names) is not cst.ImportStar and any(
                _MODE_MEMBERS.match(cst.helpers.get_full_name_for_node(a.name) or "") for a in n.names):
            yield n, "imports a switch of torch's mode stacks or global hook registries"


def _attributes(prog, aliases):
    for n in prog.nodes_of(cst.Attribute):
        full = _canonical(aliases, dotted(n))
        if full.startswith("torch.") and _MODE_MEMBERS.match(n.attr.value):
            yield n, f"`{full}` switches off or rearranges what the tracer observes through"
        elif full == "sys.monitoring" or full.startswith("sys.monitoring."):
            yield n, "`sys.monitoring` can intercept the audit's instrumentation"


def _calls(prog, aliases):
    for n in prog.nodes_of(cst.Call):
        fn = _canonical(aliases, dotted(n.func))
        if fn in _TRACE_CALLS:
            yield n, f"`{fn}` installs a tracing hook over the audited run"
        elif fn in ("setattr", "delattr") and n.args:
            target = _canonical(aliases, dotted(n.args[0].value))
            if _PATCHED_BASES.match(target):
                yield n, f"`{fn}` on `{target}` replaces what the tracer observes at run time"


def _assignments(prog, aliases):
    for n in prog.nodes_of(cst.Assign, cst.AugAssign, cst.AnnAssign):
        targets = [t.target for t in n.targets] if type(n) is cst.Assign else [n.target]
        for t in targets:
            if type(t) is cst.Attribute:
                base = _canonical(aliases, dotted(t.value))
                if _PATCHED_BASES.match(base):
                    yield n, f"replaces `{base}.{t.attr.value}` at run time, which the tracer observes"


def _mentions(prog):
    for n in prog.nodes_of(cst.SimpleString, cst.Name):
        value = n.value
        if _OURS.search(value):
            yield n, ("names the audit's own instrumentation"
                      + (f" ({value[:60]})" if type(n) is cst.SimpleString else f" (`{value}`)"))

def _aliases(imports) -> dict[str, str]:
    """Local name -> dotted module path: `import torch.nn.functional as F`, `from torch.optim import Optimizer`."""
    out: dict[str, str] = {}
    for n in imports:
        if type(n) is cst.Import:
            for a in n.names:
                full = cst.helpers.get_full_name_for_node(a.name) or ""
                if a.asname is not None and type(a.asname.name) is cst.Name:
                    out[a.asname.name.value] = full
        elif n.module is not None and not n.relative and type(n.names) is not cst.ImportStar:
            mod = cst.helpers.get_full_name_for_node(n.module) or ""
            for a in n.names:
                name = cst.helpers.get_full_name_for_node(a.name) or ""
                local = a.asname.name.value if a.asname is not None and type(a.asname.name) is cst.Name else name
                out[local] = f"{mod}.{name}"
    return out
