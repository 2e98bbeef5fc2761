"""Fast walks over libcst trees: child lists without trivia, cached per module.

libcst computes `children` by visiting every field, which dominates the audit's run time when called repeatedly;
the analysis of one module caches them. Keys are ids, valid while that module is alive, so every cache is reset
for each module (`reset_children_cache`), which holds a reference to it.
"""
from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Iterator

import libcst as cst

_CHILDREN: dict[int, tuple] = {}
_CACHE_OWNER: list = []
_CACHES: list[dict] = []


def module_cache() -> dict:
    """A dict keyed by node ids of the current module, cleared with the children cache."""
    cache: dict = {}
    _CACHES.append(cache)
    return cache


def reset_children_cache(module: cst.Module) -> None:
    if _CACHE_OWNER and _CACHE_OWNER[0] is module:
        return
    release_caches()
    _CACHE_OWNER.append(module)


def release_caches() -> None:
    """Empty every cache and drop the module they belong to, so a finished audit's CST is freed at once rather
    than living on until the next module's audit (and being traversed by the cyclic collector meanwhile)."""
    _CHILDREN.clear()
    for cache in _CACHES:
        cache.clear()
    _CACHE_OWNER.clear()


# Whitespace, punctuation and operator nodes carry nothing the analysis reads (operators are read through their
# parent's attribute); leaving them out halves every walk.
_TRIVIA = (
    cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.TrailingWhitespace, cst.Newline, cst.EmptyLine,
    cst.Comment, cst.Comma, cst.Dot, cst.LeftParen, cst.RightParen, cst.LeftSquareBracket, cst.RightSquareBracket,
    cst.LeftCurlyBrace, cst.RightCurlyBrace, cst.Colon, cst.Semicolon, cst.AssignEqual, cst.ImportStar,
    cst.BaseBinaryOp, cst.BaseBooleanOp, cst.BaseCompOp, cst.BaseUnaryOp, cst.BaseAugOp,
)

def _concrete(classes: tuple) -> frozenset:
    out, todo = set(), list(classes)
    while todo:
        c = todo.pop()
        out.add(c)
        todo.extend(c.__subclasses__())
    return frozenset(out)


_TRIVIA_TYPES = _concrete(_TRIVIA)
_NODE_TYPES = _concrete((cst.CSTNode,)) - _TRIVIA_TYPES
_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(t: type) -> tuple[str, ...]:
    """The fields of a node type that can hold a non-trivia node, by their annotations: `lpar`, `comma` and
    the `whitespace_*` fields never do, and skipping them halves the work of computing children."""
    names = _FIELDS.get(t)
    if names is None:
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t) if _may_hold_node(f.type))
    return names


def _instantiable(cls: type) -> set[type]:
    """Concrete subclasses, each as its module exports it (libcst's slots decorator leaves the class it
    replaced behind among `__subclasses__`)."""
    return {c for c in _concrete((cls,)) if not inspect.isabstract(c)
            and getattr(sys.modules.get(c.__module__), c.__name__, None) is c}


def _may_hold_node(annotation) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, cst.CSTNode) and not _instantiable(annotation) <= _TRIVIA_TYPES
    if isinstance(annotation, str):  # a Literal's value
        return False
    args = typing.get_args(annotation)
    return any(_may_hold_node(a) for a in args) if args else True  # unreadable annotation: keep the field


def children(n: cst.CSTNode) -> tuple:
    """Child nodes in field order (libcst's `children` property runs its visitor machinery and is ~3× slower)."""
    kids = _CHILDREN.get(id(n))
    if kids is None:
        out = []
        for name in _child_fields(type(n)):
            v = getattr(n, name)
            tv = type(v)
            if tv in _NODE_TYPES:
                out.append(v)
            elif tv is list or tv is tuple:
                out.extend(x for x in v if type(x) in _NODE_TYPES)
        kids = _CHILDREN[id(n)] = tuple(out)
    return kids


_DEFS = (cst.FunctionDef, cst.ClassDef)


def walk(node: cst.CSTNode, into_defs: bool = False) -> Iterator[cst.CSTNode]:
    """Pre-order walk; nested function and class bodies are separate scopes and skipped unless asked.

    libcst classes use ABCMeta, so `isinstance` is slow on this hot path; exact type tests are used instead.
    """
    stack = [node]
    cache = _CHILDREN
    while stack:
        n = stack.pop()
        yield n
        if not into_defs and n is not node and type(n) in _DEFS:
            continue
        kids = cache.get(id(n))
        if kids is None:
            kids = children(n)
        stack.extend(reversed(kids))
