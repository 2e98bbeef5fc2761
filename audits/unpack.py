"""Decode self-extracting submissions (`exec(lzma.decompress(base64.b85decode("...")))`) without running them.

Record scripts are often minified and packed to save artifact bytes. We recognise the decode chain
statically — a string literal passed through known base-N decoders and decompressors — and evaluate only
those pure stdlib functions, with a cap on output size so a decompression bomb stops early.
"""
from __future__ import annotations

import base64
import bz2
import lzma
import zlib
from dataclasses import dataclass

import libcst as cst

from audits.walk import walk

MAX_DECODED_BYTES = 8_000_000
MAX_LAYERS = 6

_DECODERS = {
    "b85decode": base64.b85decode,
    "b64decode": base64.b64decode,
    "a85decode": base64.a85decode,
    "b32decode": base64.b32decode,
    "b16decode": base64.b16decode,
    "urlsafe_b64decode": base64.urlsafe_b64decode,
    "decodebytes": base64.decodebytes,
    "unhexlify": bytes.fromhex,
    "fromhex": bytes.fromhex,
}
_MODULE_OF = {"lzma": "lzma", "zlib": "zlib", "gzip": "gzip", "bz2": "bz2"}


class UnpackError(Exception):
    pass


_LZMA_CONSTANTS = {name: getattr(lzma, name) for name in dir(lzma) if name.startswith(("FORMAT_", "FILTER_", "CHECK_", "PRESET_"))}


def _lzma_options(call: cst.Call) -> dict:
    """`format=L.FORMAT_RAW, filters=[{"id": L.FILTER_LZMA2}]` — golfed scripts drop the .xz container."""
    opts: dict = {}
    for arg in call.args[1:]:
        if arg.keyword is None:
            continue
        value = _literal(arg.value)
        if value is not None:
            opts[arg.keyword.value] = value
    return opts


def _literal(node: cst.BaseExpression):
    """Literals and lzma constants (`L.FILTER_LZMA2`), nested in lists and dicts; None when unknown."""
    if isinstance(node, cst.Attribute) and node.attr.value in _LZMA_CONSTANTS:
        return _LZMA_CONSTANTS[node.attr.value]
    if isinstance(node, cst.Name) and node.value in _LZMA_CONSTANTS:
        return _LZMA_CONSTANTS[node.value]
    if isinstance(node, cst.Integer):
        return int(node.value, 0)
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.List):
        items = [_literal(e.value) for e in node.elements]
        return None if any(i is None for i in items) else items
    if isinstance(node, cst.Dict):
        out = {}
        for el in node.elements:
            if not isinstance(el, cst.DictElement):
                return None
            k, v = _literal(el.key), _literal(el.value)
            if k is None or v is None:
                return None
            out[k] = v
        return out
    return None


def _bounded_decompress(codec: str, data: bytes, options: dict | None = None) -> bytes:
    """Decompress at most MAX_DECODED_BYTES; a larger output is reported as a bomb."""
    if codec == "lzma":
        options = options or {}
        d = lzma.LZMADecompressor(format=options.get("format", lzma.FORMAT_AUTO), filters=options.get("filters"))
        out = d.decompress(data, max_length=MAX_DECODED_BYTES + 1)
    elif codec == "bz2":
        d = bz2.BZ2Decompressor()
        out = d.decompress(data, max_length=MAX_DECODED_BYTES + 1)
    elif codec in ("zlib", "gzip"):
        d = zlib.decompressobj(31 if codec == "gzip" else 47)  # 47: zlib or gzip header, auto-detected
        out = d.decompress(data, MAX_DECODED_BYTES + 1)
    else:  # pragma: no cover - guarded by caller
        raise UnpackError(f"unknown codec {codec}")
    if len(out) > MAX_DECODED_BYTES:
        raise UnpackError(f"decompressed payload exceeds {MAX_DECODED_BYTES} bytes (decompression bomb?)")
    return out


@dataclass
class Decoded:
    text: str
    codecs: list[str]


def _callee(node: cst.BaseExpression) -> tuple[str, str]:
    """('lzma', 'decompress') for `lzma.decompress` / `L.decompress` (alias resolved by caller)."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return node.value.value, node.attr.value
    if isinstance(node, cst.Name):
        return "", node.value
    return "", ""


def evaluate_chain(expr: cst.BaseExpression, aliases: dict[str, str], codecs: list[str]) -> bytes | str | None:
    """Statically evaluate a decode chain; None when the expression is not one we can resolve."""
    if isinstance(expr, (cst.SimpleString, cst.ConcatenatedString)):
        value = expr.evaluated_value
        return value if isinstance(value, (str, bytes)) else None
    if isinstance(expr, cst.Name) and isinstance(aliases.get("=" + expr.value), cst.BaseExpression):
        bound = aliases["=" + expr.value]
        aliases = {k: v for k, v in aliases.items() if k != "=" + expr.value}  # no self-reference loops
        return evaluate_chain(bound, aliases, codecs)
    if not isinstance(expr, cst.Call):
        return None
    mod, fn = _callee(expr.func)
    mod = aliases.get(mod, mod)
    fn = aliases.get(fn, fn) if not mod else fn
    if fn == "compile" and not mod and expr.args:  # `code = compile(src, "<x>", "exec")`, then `exec(code)`
        return evaluate_chain(expr.args[0].value, aliases, codecs)
    meth = expr.func.attr.value if isinstance(expr.func, cst.Attribute) else ""
    if meth in _PURE_METHODS:
        return _pure_method(meth, expr, aliases, codecs)
    if meth in ("decode", "encode"):
        fn = meth
        inner = evaluate_chain(expr.func.value, aliases, codecs)
        if inner is None:
            return None
        try:
            return inner.decode("utf-8") if isinstance(inner, bytes) and fn == "decode" else (
                inner.encode("utf-8") if isinstance(inner, str) and fn == "encode" else inner)
        except UnicodeDecodeError:
            raise UnpackError("decoded payload is not UTF-8 text") from None
    if not expr.args:
        return None
    arg = evaluate_chain(expr.args[0].value, aliases, codecs)
    if arg is None:
        return None
    if isinstance(arg, str) and fn not in ("fromhex",):
        arg = arg.encode("latin-1", errors="strict") if all(ord(c) < 256 for c in arg) else arg.encode()
    try:
        if fn == "decompress" and mod in _MODULE_OF:
            codecs.append(mod)
            return _bounded_decompress(_MODULE_OF[mod], arg, _lzma_options(expr) if mod == "lzma" else None)
        if fn in _DECODERS and (mod in ("base64", "binascii", "") or mod == "bytes"):
            codecs.append(fn)
            return _DECODERS[fn](arg.decode() if fn == "fromhex" and isinstance(arg, bytes) else arg)
        if fn in ("str", "bytes") and len(expr.args) >= 1:
            return arg
    except UnpackError:
        raise
    except Exception as e:  # malformed payloads are the submitter's problem; we report, never crash
        raise UnpackError(f"{'.'.join(x for x in (mod, fn) if x)} failed: {e}") from None
    return None


_PURE_METHODS = frozenset({"replace", "strip", "lstrip", "rstrip", "removeprefix", "removesuffix"})


def _pure_method(fn: str, expr: cst.Call, aliases: dict, codecs: list[str]) -> bytes | str | None:
    """`payload.replace(b"\\n", b"")`, `.strip()`: string/bytes methods with literal arguments change the payload
    in a way we can repeat without running anything."""
    inner = evaluate_chain(expr.func.value, aliases, codecs)  # type: ignore[attr-defined]
    if inner is None:
        return None
    args = []
    for a in expr.args:
        if a.keyword is not None or a.star or not isinstance(a.value, (cst.SimpleString, cst.ConcatenatedString)):
            return None
        v = a.value.evaluated_value
        if type(v) is not type(inner):
            return None
        args.append(v)
    try:
        return getattr(inner, fn)(*args)
    except (TypeError, ValueError):
        return None


def decode_exec_argument(arg: cst.BaseExpression, aliases: dict[str, str]) -> Decoded | None:
    """The source text an exec/eval argument decodes to, or None if it is not a static decode chain."""
    if isinstance(arg, cst.Call):
        mod, fn = _callee(arg.func)
        if fn == "compile" and not mod and arg.args:  # exec(compile(<chain>, "<x>", "exec"))
            arg = arg.args[0].value
    codecs: list[str] = []
    value = evaluate_chain(arg, aliases, codecs)
    if value is None or not codecs:
        return None if value is None or not isinstance(value, str) else Decoded(value, ["literal"])
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnpackError("decoded payload is not UTF-8 text") from None
    return Decoded(value, codecs)


def import_aliases(module: cst.Module, nodes: list[cst.CSTNode] | None = None) -> dict:
    """Map local names to stdlib modules/functions relevant to unpacking (`import lzma as L` → L: lzma),
    and names bound exactly once in the file to an expression (`"=NAME"` → the expression), so `exec(SRC)` and
    `exec(code)` with `code = compile(src, ...)` in a function resolve."""
    out: dict = {}
    assigned: dict[str, list] = {}
    for node in nodes if nodes is not None else walk(module, into_defs=True):
        if type(node) is cst.Assign and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            assigned.setdefault(node.targets[0].target.value, []).append(node.value)
        elif type(node) in (cst.AnnAssign, cst.AugAssign, cst.For, cst.NamedExpr) and type(node.target) is cst.Name:
            assigned.setdefault(node.target.value, []).append(None)  # rebound another way: not one known value
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    name = cst.helpers.get_full_name_for_node(alias.name) or ""
                    local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
                    out[local] = name
            elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    name = cst.helpers.get_full_name_for_node(alias.name) or ""
                    local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
                    out[local] = name
    for name, values in assigned.items():
        if len(values) == 1 and values[0] is not None:  # bound once, anywhere in the file
            out["=" + name] = values[0]
    return out
