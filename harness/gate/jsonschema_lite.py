"""Validate submission.json against its documented JSON schema, with every problem located at line:column.

The gate runs where only the tool's own dependencies are installed, so it does not depend on `jsonschema`: this
module implements the part of JSON Schema (draft 2020-12) that `harness/schemas/submission.schema.json` uses
(`SUPPORTED` below; a test keeps the schema inside that set and checks that `jsonschema` agrees with this
validator), and a scanner that maps JSON pointers to positions in the text, which `json` does not report.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from json.decoder import scanstring
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "submission.schema.json"

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default", "format", "deprecated"}
SUPPORTED = ANNOTATIONS | {
    "type", "required", "properties", "additionalProperties", "items", "minItems", "maxItems", "uniqueItems",
    "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "if", "then", "else", "anyOf",
}


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# --- locating values in the text --------------------------------------------------------------------------


@dataclass
class Located:
    """Where each JSON pointer's value (and, for object members, its key) starts; duplicate keys found."""

    values: dict[str, int]
    keys: dict[str, int]
    duplicates: list[tuple[str, int]]  # (pointer, offset of the repeated key)
    line_starts: list[int]

    def line_col(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.line_starts, offset) - 1
        return i + 1, offset - self.line_starts[i] + 1

    def at(self, pointer: str, key: bool = False) -> tuple[int, int]:
        """Line and column of `pointer` (its key when `key` and it is an object member); the nearest parent else."""
        p = pointer
        while True:
            table = self.keys if key and p in self.keys else self.values
            if p in table:
                return self.line_col(table[p])
            if not p:
                return 1, 1
            p = p.rsplit("/", 1)[0]


def escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class _Scanner:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.values: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.duplicates: list[tuple[str, int]] = []

    def ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r\n":
            i += 1
        self.i = i

    def value(self, ptr: str) -> None:
        self.ws()
        self.values[ptr] = self.i
        c = self.s[self.i]
        if c == "{":
            self.i += 1
            seen: set[str] = set()
            self.ws()
            if self.s[self.i] == "}":
                self.i += 1
                return
            while True:
                self.ws()
                key_at = self.i
                key, self.i = scanstring(self.s, self.i + 1)
                child = f"{ptr}/{escape_pointer(key)}"
                if key in seen:
                    self.duplicates.append((child, key_at))
                seen.add(key)
                self.keys[child] = key_at
                self.ws()
                self.i += 1  # ':'
                self.value(child)
                self.ws()
                c = self.s[self.i]
                self.i += 1
                if c == "}":
                    return
        elif c == "[":
            self.i += 1
            self.ws()
            if self.s[self.i] == "]":
                self.i += 1
                return
            n = 0
            while True:
                self.value(f"{ptr}/{n}")
                n += 1
                self.ws()
                c = self.s[self.i]
                self.i += 1
                if c == "]":
                    return
        elif c == '"':
            _, self.i = scanstring(self.s, self.i + 1)
        else:
            s, i = self.s, self.i
            while i < len(s) and s[i] not in ",]} \t\r\n":
                i += 1
            self.i = i


def locate(text: str) -> Located:
    """Positions of every value in a JSON text that `json.loads` has already accepted."""
    sc = _Scanner(text)
    sc.value("")
    starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
    return Located(sc.values, sc.keys, sc.duplicates, starts)


# --- validation -------------------------------------------------------------------------------------------


@dataclass
class SchemaError:
    pointer: str
    message: str
    keyword: str
    at_key: bool = False  # locate at the member's key rather than its value


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_type(v: Any, t: str) -> bool:
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v)
                                                                    and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return _type_name(v) == t


def _show(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


def _a(t: str) -> str:
    return _ARTICLE.get(t, f"a {t}")


def validate(instance: Any, schema: dict[str, Any], ptr: str = "") -> list[SchemaError]:
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise ValueError(f"schema keyword(s) not supported by the gate's validator: {', '.join(sorted(unknown))}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            want = " or ".join(_a(t) for t in types)
            got = f"{_a(_type_name(instance))} ({_show(instance)})"
            return [SchemaError(ptr, f"expected {want}, got {got}", "type")]  # the rest would repeat it
    errs = _value_errors(instance, schema, ptr)
    if _is_type(instance, "number"):
        errs += _number_errors(instance, schema, ptr)
    if isinstance(instance, str):
        errs += _string_errors(instance, schema, ptr)
    if isinstance(instance, list):
        errs += _array_errors(instance, schema, ptr)
    if isinstance(instance, dict):
        errs += _object_errors(instance, schema, ptr)
    return errs + _combinator_errors(instance, schema, ptr)


def _value_errors(instance: Any, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    if "const" in schema and instance != schema["const"]:
        errs.append(SchemaError(ptr, f"must be {_show(schema['const'])}, got {_show(instance)}", "const"))
    if "enum" in schema and instance not in schema["enum"]:
        allowed = ", ".join(_show(x) for x in schema["enum"])
        errs.append(SchemaError(ptr, f"must be one of {allowed}; got {_show(instance)}", "enum"))
    return errs


def _number_errors(instance: Any, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    for kw, bad, word in (("minimum", lambda x, b: x < b, "at least"), ("maximum", lambda x, b: x > b, "at most"),
                          ("exclusiveMinimum", lambda x, b: x <= b, "greater than"),
                          ("exclusiveMaximum", lambda x, b: x >= b, "less than")):
        if kw in schema and bad(instance, schema[kw]):
            errs.append(SchemaError(ptr, f"must be {word} {schema[kw]}, got {_show(instance)}", kw))
    return errs


def _string_errors(instance: str, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    n = len(instance)
    if "minLength" in schema and n < schema["minLength"]:
        least = schema["minLength"]
        what = "must not be empty" if least == 1 else f"needs at least {least} characters"
        errs.append(SchemaError(ptr, what, "minLength"))
    if "maxLength" in schema and n > schema["maxLength"]:
        errs.append(SchemaError(ptr, f"is {n} characters; at most {schema['maxLength']} allowed", "maxLength"))
    if "pattern" in schema and not re.search(schema["pattern"], instance):
        hint = schema.get("description", "").split(".")[0]
        errs.append(SchemaError(ptr, f"{_show(instance)} does not have the expected form"
                                     + (f" ({hint})" if hint else f" /{schema['pattern']}/"), "pattern"))
    return errs


def _array_errors(instance: list, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    if "minItems" in schema and len(instance) < schema["minItems"]:
        errs.append(SchemaError(ptr, f"needs at least {schema['minItems']} item(s), has {len(instance)}",
                                "minItems"))
    if "maxItems" in schema and len(instance) > schema["maxItems"]:
        errs.append(SchemaError(ptr, f"allows at most {schema['maxItems']} items, has {len(instance)}", "maxItems"))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(instance):
            if any(_equal(item, s) for s in seen):
                errs.append(SchemaError(f"{ptr}/{i}", f"repeats {_show(item)}; items must be unique",
                                        "uniqueItems"))
            seen.append(item)
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            errs.extend(validate(item, schema["items"], f"{ptr}/{i}"))
    return errs


def _object_errors(instance: dict, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    for name in schema.get("required", []):
        if name not in instance:
            errs.append(SchemaError(ptr, f"missing required field {_show(name)}", "required"))
    props = schema.get("properties", {})
    for name, value in instance.items():
        child = f"{ptr}/{escape_pointer(name)}"
        if name in props:
            errs.extend(validate(value, props[name], child))
        elif schema.get("additionalProperties") is False:
            errs.append(SchemaError(child, f"unknown field {_show(name)}", "additionalProperties", at_key=True))
        elif isinstance(schema.get("additionalProperties"), dict):
            errs.extend(validate(value, schema["additionalProperties"], child))
    return errs


def _combinator_errors(instance: Any, schema: dict[str, Any], ptr: str) -> list[SchemaError]:
    errs = []
    if "if" in schema:
        branch = "then" if not validate(instance, schema["if"], ptr) else "else"
        if branch in schema:
            errs.extend(validate(instance, schema[branch], ptr))
    if "anyOf" in schema:
        results = [validate(instance, s, ptr) for s in schema["anyOf"]]
        if all(results):
            errs.extend(min(results, key=len))
    return errs


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def schema_keywords(schema: Any) -> set[str]:
    """Every keyword used anywhere in a schema (for the test that keeps the schema inside `SUPPORTED`)."""
    out: set[str] = set()
    if isinstance(schema, dict):
        out |= set(schema)
        for k, v in schema.items():
            if k == "properties":
                for sub in v.values():
                    out |= schema_keywords(sub)
            elif k in ("items", "additionalProperties", "if", "then", "else") and isinstance(v, dict):
                out |= schema_keywords(v)
            elif k == "anyOf":
                for sub in v:
                    out |= schema_keywords(sub)
    return out
