"""Every id an output can print is in the catalogue that `scorefirst rules`, docs/rules/, SARIF and the HTML rule
pages are built from.

The ids are read from the code that emits them (with `ast`, nothing imported): the dynamic audit's `Check(...)` and
`Probe(...)` ids and the `id = "..."` of each ledger check class (harness/ledger_checks/), the gate's `check.add(RULE, ...)` ids, findings built outside a rule (`rule_id=...`,
`rule_by_id(ID)`), and every rule id a catalogue doc points to (legal patterns such as PG-TTT-005)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from audits.registry import all_rules, catalogue

ROOT = Path(__file__).resolve().parent.parent
RULE_ID = re.compile(r"\b(?:PG|SF)-[A-Z]+(?:-(?:\d{3}|[A-Z]+))?\b")


def _calls(folder: str):
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                yield path, node


def _literal(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def emitted_ids() -> dict[str, str]:
    """id -> where it is emitted."""
    found: dict[str, str] = {}
    for path, call in _calls("harness"):
        func = call.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        dynamic = "gate" not in path.relative_to(ROOT).parts  # the gate's own Check is a check name, not an id
        if dynamic and name in ("Check", "Probe") and call.args and (i := _literal(call.args[0])):
            found.setdefault(i, where)
        if name in ("rule_by_id", "entry_by_id") and call.args and (i := _literal(call.args[0])):
            found.setdefault(i, where)  # a finding built with a catalogue entry's metadata
        if name == "add" and call.args and (i := _literal(call.args[0])) and RULE_ID.fullmatch(i):
            found.setdefault(i, where)
        for kw in call.keywords:
            if kw.arg == "rule_id" and (i := _literal(kw.value)):
                found.setdefault(i, where)
    for path in sorted((ROOT / "harness" / "ledger_checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["id"] \
                            and (i := _literal(stmt.value)):
                        found.setdefault(i, f"{path.relative_to(ROOT)}:{stmt.lineno}")
    for entry in catalogue():
        for ref in RULE_ID.findall(entry.doc()):
            found.setdefault(ref, f"the doc of {entry.id}")
    return found


def test_every_emitted_id_is_listed_by_scorefirst_rules(cli):
    listed = {e["id"] for e in json.loads(cli("rules", "--format", "json").out)}
    emitted = emitted_ids()
    assert len(emitted) > 30  # the scan found the emitters (a broken scan would pass vacuously)
    missing = {i: where for i, where in emitted.items() if i not in listed}
    assert missing == {}


def test_the_scan_finds_known_emitters():
    emitted = emitted_ids()
    for i in ("score-before-update", "repeated-targets", "future-perturbation", "PG-FMT", "PG-TIME-TRAIN", "PG-DYNAMIC", "PG-NET",
              "PG-TTT-005"):
        assert i in emitted, i


def test_each_entry_has_a_doc_and_a_generated_page(cli):
    docs = ROOT / "docs" / "rules"
    for entry in catalogue():
        secs = entry.sections()
        assert secs.get("summary") and secs.get("Example"), entry.id
        assert (docs / f"{entry.id}.md").exists(), entry.id
        text = cli("rules", entry.id).out
        assert text.startswith(f"{entry.id}  {entry.name}") and entry.ruling.quote in text


def test_kinds_and_legal_patterns_are_marked():
    kinds = {e.id: e.kind for e in catalogue()}
    assert {r.id for r in all_rules()} == {i for i, k in kinds.items() if k == "static"}
    assert kinds["PG-TTT-005"] == kinds["PG-NG-005"] == "legal"
    assert kinds["score-before-update"] == "dynamic" and kinds["PG-SIZE-001"] == "gate"
