"""Audit one source text: parse, decode packed layers, run every rule, decide active/inactive/suppressed."""
from __future__ import annotations

import ast
import gc
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import libcst as cst

from audits.flow import build_flows
from audits.linking import LineMap, link
from audits.patterns import EXEC_FUNCS
from audits.positions import Positions
from audits.program import Program, build_program
from audits.reachability import Region, inactive_regions
from audits.walk import release_caches, reset_children_cache, walk
from audits.registry import all_rules
from audits.results import DecodedSource, FileResult, Finding, Origin, Related, fingerprint
from audits.rule import Context, Hit
from audits.source import InputError, SourceFile
from audits.suppressions import parse_suppressions
from audits.types import Severity, Status
from audits.unpack import MAX_LAYERS, UnpackError, decode_exec_argument, import_aliases



def precheck(text: str, path: str) -> tuple[ast.Module | None, str | None]:
    """Refuse code CPython itself could not compile for being too deep, before libcst sees it; returns CPython's
    tree (the positions are read from it) or its syntax error message.

    libcst's native parser overflows its stack (a hard crash, not an exception) on inputs such as 5,000 nested
    parentheses, and needs minutes for a 100,000-term sum; CPython's parser rejects both in milliseconds. Any
    other SyntaxError is returned as a message and left to libcst, which parses 3.12 syntax this interpreter may
    not; when libcst rejects the file too, CPython's location is the clearer one.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings about the submission's code are not ours to print
            return ast.parse(text), None
    except SyntaxError as e:
        msg = str(e.msg or "invalid syntax")
        if "too many" in msg or "too complex" in msg or "too deeply" in msg:
            raise InputError("too-complex", f"{path}:{e.lineno or 1}: {msg}; Python itself cannot compile this") from None
        col = f":{e.offset}" if e.offset else ""
        return None, f"{path}:{e.lineno or 1}{col}: syntax error: {msg}"
    except (RecursionError, MemoryError):
        raise InputError("too-complex", f"{path}: expressions nested too deeply; Python itself cannot compile this") from None
    except ValueError:
        pass  # e.g. NUL bytes past the sniffed prefix: libcst reports it
    return None, None


# The analyzer keeps a concrete syntax tree and per-node facts: about 27 KB of memory per source line (113 MB for a
# 4,211-line record script). Real submissions stay under 5,000 lines; above this cap a file (or a decoded layer) is
# refused with exit 2 instead of taking gigabytes, which `gate --jobs N` would multiply.
MAX_LINES = 30_000


def parse(text: str, path: str) -> tuple[cst.Module, Positions]:
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        raise InputError("too-large", f"{path}: {lines} lines exceeds the analyzer's {MAX_LINES}-line limit "
                                      f"(about 27 KB of memory per line)")
    tree, cpython_msg = precheck(text, path)
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as e:
        msg = str(e.message).splitlines()[0] if e.message else "invalid syntax"
        raise InputError("syntax", cpython_msg or f"{path}:{e.raw_line}:{e.raw_column + 1}: syntax error: {msg}") from None
    except RecursionError:
        raise InputError("too-complex", f"{path}: expressions nested too deeply to parse") from None
    reset_children_cache(module)
    return module, Positions(module, text, tree)


@dataclass
class Layer:
    """One layer of code: the file itself (layer 0) or a decoded self-extracting payload."""

    text: str
    module: cst.Module
    positions: Positions
    nodes: list[cst.CSTNode]  # every node, in walk order
    origin: Origin | None
    unpack_failures: list[tuple[cst.Call, str]]
    resolved_execs: set[int]


def _exec_calls(nodes: list[cst.CSTNode], text: str) -> list[cst.Call]:
    if not any(f"{name}(" in text for name in EXEC_FUNCS):
        return []
    return [n for n in nodes if type(n) is cst.Call and type(n.func) is cst.Name and n.func.value in EXEC_FUNCS]


def decode_layers(text: str, path: str) -> list[Layer]:
    """The file and every payload it unpacks with exec(...), recursively, capped in depth and size."""
    layers: list[Layer] = []
    todo: list[tuple[str, Origin | None, int]] = [(text, None, 0)]
    queued: set[str] = set()
    while todo:
        src, origin, depth = todo.pop(0)
        module, positions = parse(src, path if origin is None else f"{path} (decoded layer {origin.layer})")
        layer = Layer(src, module, positions, list(walk(module, into_defs=True)), origin, [], set())
        layers.append(layer)
        execs = _exec_calls(layer.nodes, src)
        aliases = import_aliases(module, layer.nodes) if execs else {}
        for call in execs:
            if not call.args:
                continue
            try:
                decoded = decode_exec_argument(call.args[0].value, aliases)
            except UnpackError as e:
                layer.unpack_failures.append((call, str(e)))
                continue
            if decoded is None:
                continue
            layer.resolved_execs.add(id(call))
            if decoded.text in queued:
                continue  # `code = compile(src, ...)` then `exec(code)`: one payload, one layer
            queued.add(decoded.text)
            if depth + 1 > MAX_LAYERS:
                layer.unpack_failures.append((call, f"more than {MAX_LAYERS} nested packed layers"))
                continue
            outer_line = positions.line(call)
            todo.append((decoded.text, Origin(len(layers) + len(todo), outer_line,
                                              decoded.codecs if origin is None else origin.codecs + decoded.codecs),
                         depth + 1))
    return layers


def _line_in(regions: list[Region], line: int) -> Region | None:
    best = None
    for r in regions:
        if r.start <= line <= r.end and (best is None or r.end - r.start < best.end - best.start):
            best = r
    return best


def _hit_line(prog: Program, hit: Hit) -> int:
    return hit.line or (prog.line(hit.node) if hit.node is not None else 1)


def audit_layer(layer: Layer, path: str, env: dict[str, set[str]],
                local_modules: dict[str, str] | None = None,
                linemap: LineMap | None = None, linked: frozenset[str] = frozenset()) -> tuple[list[Finding], list]:
    """Findings and suppressions of one layer. With a `linemap`, the layer is the script followed by the
    same-folder modules it imports (`linked`): findings are placed back in the file and line they came from,
    and only the script's own suppressions are returned (each module reports its own)."""
    prog = build_program(layer.module, layer.text, env, layer.positions, layer.nodes)
    prog.local_modules = dict(local_modules or {})
    prog.linked_modules = linked
    prog.resolved_execs = layer.resolved_execs
    prog.unpack_failures = layer.unpack_failures
    regions = inactive_regions(prog)
    ctx_cfg = Context(prog, build_flows(prog, prune=True))
    ctx_all = Context(prog, build_flows(prog, prune=False))
    sups, applies = parse_suppressions(layer.text, path)
    if linemap is not None:
        sups = [sup for sup in sups if sup.line <= linemap.own_lines]
    findings: list[Finding] = []
    hygiene = []
    for rule in all_rules():
        if getattr(rule, "needs_suppressions", False):
            hygiene.append(rule)
            continue
        inst = rule()
        active: dict[int, Hit] = {}
        all_hits = list(inst.check(ctx_all))
        cfg_hits = list(inst.check(ctx_cfg)) if rule.uses_flows else all_hits
        for hit in cfg_hits:
            line = _hit_line(prog, hit)
            if _line_in(regions, line) is None:
                active.setdefault(line, hit)
        inactive: dict[int, tuple[Hit, Region]] = {}
        for hit in all_hits:
            line = _hit_line(prog, hit)
            region = _line_in(regions, line)
            if line not in active and region is not None:
                inactive.setdefault(line, (hit, region))
        for line, hit in active.items():
            findings.append(_finding(rule, prog, hit, line, path, layer.origin, Status.ACTIVE, ""))
        for line, (hit, region) in inactive.items():
            f = _finding(rule, prog, hit, line, path, layer.origin, Status.INACTIVE, region.reason)
            if rule.severity is Severity.ERROR:
                f.default_keys = [f"{k}={prog.config.used_keys.get(k, '?').removesuffix(' (default)')}"
                                  for k in region.default_keys]
            findings.append(f)
    for f in findings:
        for sup in applies.get(f.line, []):
            if f.rule_id in sup.rule_ids and sup.reason:
                f.status = Status.SUPPRESSED
                f.status_reason = f"suppressed: {sup.reason}"
                sup.used = True
    for rule in hygiene:
        ctx_cfg.suppressions = sups  # type: ignore[attr-defined]
        for hit in rule().check(ctx_cfg):
            findings.append(_finding(rule, prog, hit, _hit_line(prog, hit), path, layer.origin, Status.ACTIVE, ""))
    if linemap is not None:
        for f in findings:
            _relocate(f, linemap)
    return findings, sups


def _relocate(f: Finding, linemap: LineMap) -> None:
    """A finding of the combined text, in the file and line a person opens."""
    path, line = linemap.locate(f.line)
    shift = f.line - line
    f.path, f.line, f.end_line = path, line, f.end_line - shift
    for r in f.related:
        rpath, rline = linemap.locate(r.line)
        r.line, r.path = rline, ("" if rpath == path else rpath)


def _finding(rule, prog: Program, hit: Hit, line: int, path: str, origin: Origin | None, status: Status,
             reason: str) -> Finding:
    if hit.node is not None and prog.line(hit.node) == line:
        start_line, col, end_line, end_col = prog.span(hit.node)
        if end_line != start_line:
            end_line, end_col = start_line, len(prog.source_line(start_line)) + 1
    else:
        text = prog.source_line(line)
        start_line, col, end_line, end_col = line, len(text) - len(text.lstrip()) + 1, line, len(text) + 1
    return Finding(
        rule_id=rule.id, rule_name=rule.name, conditions=list(rule.conditions), severity=hit.severity or rule.severity,
        confidence=rule.confidence, message=hit.message, path=path, line=start_line, column=col, end_line=end_line,
        end_column=end_col, snippet=prog.source_line(start_line).strip(), status=status, status_reason=reason,
        related=[Related(ln, msg) for ln, msg in hit.related], origin=origin,
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The CST of a large script is ~10^5 objects that live for the whole audit; the cyclic collector would
    traverse them all on each of its full passes (a fifth of the audit's time) only to free nothing. Pausing it
    per file leaves freeing to reference counts; whatever cycles the audit leaves go at the next collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def audit_source(src: SourceFile, env: dict[str, set[str]]) -> FileResult:
    with _collector_paused():
        try:
            return _audit_source(src, env)
        finally:
            release_caches()


def _linked_layers(src: SourceFile) -> tuple[list[Layer], LineMap | None]:
    """The script's layers, its first one joined with the same-folder modules it imports; unjoined when they
    add nothing or the joined text does not parse (then each import stays a "cannot verify")."""
    if src.linked:
        text, linemap = link(src.text, src.path, [(m.path, m.text) for m in src.linked.values()], MAX_LINES)
        if linemap.segments:
            try:
                return decode_layers(text, src.path), linemap
            except InputError:
                pass
    return decode_layers(src.text, src.path), None


def _audit_source(src: SourceFile, env: dict[str, set[str]]) -> FileResult:
    result = FileResult(path=src.path, sha256=src.sha256, lines=src.text.count("\n") + 1, source=src.text)
    layers, linemap = _linked_layers(src)
    linked = frozenset(name for name, m in src.linked.items() if linemap is not None and m.path in linemap.linked_paths)
    for layer in layers:
        own = linemap if layer.origin is None else None
        findings, sups = audit_layer(layer, src.path, env, src.local_modules, own, linked if own else frozenset())
        result.findings.extend(findings)
        result.suppressions.extend(sups)
        if layer.origin is not None:
            result.decoded.append(DecodedSource(layer.origin.layer, layer.origin.outer_line, layer.origin.codecs, layer.text))
    result.findings.sort(key=lambda f: (f.origin.layer if f.origin else 0, f.path != src.path, f.path, f.line, f.rule_id))
    seen: dict[tuple, int] = {}
    for f in result.findings:
        key = (f.rule_id, " ".join(f.snippet.split()))
        seen[key] = seen.get(key, -1) + 1
        f.fingerprint = fingerprint(f.rule_id, f.path, f.snippet, seen[key])
    return result
