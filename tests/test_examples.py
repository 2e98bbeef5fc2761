"""The bundled example submissions (the main job's input): each folder is audited as the main job does it —
the README's run command supplies the environment — and every annotated line is checked.

The shipped scripts carry no answer key: the annotated copies (`# expect:`, `# ok:`, `# fixture-verdict:`) live
in tests/fixtures/examples/, and each shipped script is its copy with the annotations stripped (same lines)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from audits.api import audit_paths
from audits.types import Status

_spec = importlib.util.spec_from_file_location("fixture_runner", Path(__file__).parent / "test_audit_fixtures.py")
_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runner)

EXAMPLES = Path(__file__).resolve().parents[1] / "audits" / "examples" / "records" / "track_10min_16mb"
ANNOTATED = Path(__file__).resolve().parent / "fixtures" / "examples" / "track_10min_16mb"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
_TRAILING = re.compile(r"[ \t]*#\s*(?:expect|expect-inactive|ok):\s*[A-Z0-9\-, ]+$")
NEUTRAL_FIRST_LINE = "# -*- coding: utf-8 -*-"


def strip_annotations(text: str) -> str:
    """The shipped script: trailing annotation comments removed, the verdict header made a neutral line (so
    every line keeps its number)."""
    lines = text.split("\n")
    out = [NEUTRAL_FIRST_LINE if i == 0 and ln.startswith("# fixture-") else _TRAILING.sub("", ln)
           for i, ln in enumerate(lines)]
    return "\n".join(out)


def annotated(folder: Path) -> str:
    return (ANNOTATED / folder.name / "train_gpt.py").read_text()


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_shipped_examples_carry_no_answer_key(folder: Path):
    shipped = (folder / "train_gpt.py").read_text()
    assert not re.search(r"#\s*(expect|expect-inactive|ok|fixture-[a-z]+):", shipped)
    assert shipped == strip_annotations(annotated(folder))


def test_there_are_legal_and_illegal_examples():
    assert len(FOLDERS) >= 4


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_example_folder(folder: Path):
    result = audit_paths([str(folder)], [], cache_dir=None, jobs=1)
    assert not result.incomplete, [f.error for f in result.errors]
    text = annotated(folder)
    want_active, want_inactive = _runner.annotations(text)
    findings = [f for f in result.findings if f.path.endswith("train_gpt.py") and f.rule_id != "SF-SUPP-001"]
    assert {(f.rule_id, f.line) for f in findings if f.status is Status.ACTIVE} == want_active
    assert {(f.rule_id, f.line) for f in findings if f.status is Status.INACTIVE} == want_inactive
    verdict = _runner.header(_runner._VERDICT, text)
    if verdict:
        got = {c.value: v.value for c, v in result.conditions.items()} | {"overall": result.overall.value}
        assert {k: got[k] for k in verdict} == verdict


def test_env_gated_example_is_judged_under_its_readme_command():
    folder = next(p for p in FOLDERS if "EnvGated" in p.name)
    result = audit_paths([str(folder)], [], cache_dir=None, jobs=1)
    assert any("README.md:" in e.source and e.key == "TTT_ENABLED" and e.value == "1" for e in result.env)
    assert result.overall.value == "FAIL"
