"""Same-folder modules are audited with the script that imports them, as one program (audits/linking.py)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from audits.api import audit_paths
from audits.cache import Cache
from audits.linking import imported_modules, link
from audits.types import Severity, Status

FIXTURES = Path(__file__).parent / "fixtures" / "linked"
EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, -]+)")


def _expected(folder: Path) -> set[tuple[str, int, str]]:
    out = set()
    for py in folder.glob("*.py"):
        for i, line in enumerate(py.read_text().splitlines(), 1):
            m = EXPECT.search(line)
            if m:
                out |= {(py.name, i, r.strip()) for r in m.group(1).split(",") if r.strip()}
    return out


def _reported(result) -> set[tuple[str, int, str]]:
    return {(Path(f.path).name, f.line, f.rule_id) for fr in result.files for f in fr.findings
            if f.status is Status.ACTIVE and f.severity is not Severity.INFO}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_folder_findings_sit_on_the_marked_lines_of_the_file_they_are_in(name):
    folder = FIXTURES / name
    result = audit_paths([folder])
    assert _reported(result) == _expected(folder)
    for fr in result.files:
        assert fr.error is None
        for f in fr.findings:
            assert f.path == fr.path  # each finding is listed under the file it points into


def test_linked_import_is_an_info_note_about_bytes_not_a_warning():
    result = audit_paths([FIXTURES / "legal_score_first_helper"])
    notes = [f for fr in result.files for f in fr.findings if f.rule_id == "SF-IMPORT-001"]
    assert [(Path(f.path).name, f.line, f.severity) for f in notes] == [("train_gpt.py", 8, Severity.INFO)]
    assert "not counted in the artifact" in notes[0].message
    assert result.overall.value == "PASS"


def test_auditing_the_script_alone_brings_in_the_module_it_imports(tmp_path):
    result = audit_paths([FIXTURES / "ngram_helper_target_key" / "train_gpt.py"])
    assert sorted(Path(fr.path).name for fr in result.files) == ["ngram_mix.py", "train_gpt.py"]
    assert _reported(result) == {("ngram_mix.py", 20, "PG-NG-001")}


def test_a_module_that_does_not_parse_stays_a_cannot_verify_warning(tmp_path):
    shutil.copytree(FIXTURES / "ngram_helper_target_key", tmp_path / "sub")
    (tmp_path / "sub" / "ngram_mix.py").write_text("def mixed_nll(:\n")
    result = audit_paths([tmp_path / "sub" / "train_gpt.py"])
    script = next(fr for fr in result.files if fr.path.endswith("train_gpt.py"))
    imp = [f for f in script.findings if f.rule_id == "SF-IMPORT-001"]
    assert [(f.line, f.severity) for f in imp] == [(15, Severity.WARNING)]
    assert "neither audited here" in imp[0].message


def test_a_module_whose_code_uses_a_name_the_script_also_defines_is_not_linked(tmp_path):
    (tmp_path / "helper.py").write_text("def score(x):\n    return x\n\n\ndef run(x):\n    return score(x)\n")
    (tmp_path / "train_gpt.py").write_text("from helper import run\n\n\ndef score(x):\n    return 2 * x\n\n\nprint(run(1))\n")
    result = audit_paths([tmp_path / "train_gpt.py"])
    script = next(fr for fr in result.files if fr.path.endswith("train_gpt.py"))
    assert [(f.rule_id, f.severity) for f in script.findings] == [("SF-IMPORT-001", Severity.WARNING)]


def test_editing_the_imported_module_invalidates_the_cached_script_result(tmp_path):
    shutil.copytree(FIXTURES / "legal_score_first_helper", tmp_path / "sub")
    cache = Cache(tmp_path / "cache", "test")
    first = audit_paths([tmp_path / "sub"], cache_dir=cache)
    assert _reported(first) == set()
    helper = tmp_path / "sub" / "score_first.py"
    text = helper.read_text()
    body = text[text.index("    for start in range("):text.index("    return loss_sum")]
    epochs = "    for epoch in range(3):\n" + "".join("    " + ln for ln in body.splitlines(keepends=True))
    helper.write_text(text.replace(body, epochs))
    assert helper.read_text().splitlines()[7] == "    for epoch in range(3):"
    second = audit_paths([tmp_path / "sub"], cache_dir=cache)
    assert ("score_first.py", 8, "PG-TTT-003") in _reported(second)


def test_imported_modules_reads_every_import_form():
    text = ("import os, helper as h\nfrom .local_mod import f\nfrom pkg.sub import g\n"
            "def f():\n    from lazy import x\n# import commented\n")
    assert imported_modules(text) == ["os", "helper", "local_mod", "pkg", "lazy"]


def test_link_maps_every_appended_line_back_to_its_file():
    script = "from helper import run\nprint(run(1))\n"
    helper = "import math\n\nSCALE = 2\n\nif __name__ == '__main__':\n    print(1)\n\n@staticmethod\ndef run(x):\n    return SCALE * x\n"
    text, linemap = link(script, "a/train_gpt.py", [("a/helper.py", helper)], max_lines=1000)
    lines = text.splitlines()
    assert "__main__" not in text  # the helper's main block does not run on import
    for combined in range(linemap.own_lines + 1, len(lines) + 1):
        path, line = linemap.locate(combined)
        assert path == "a/helper.py" and helper.splitlines()[line - 1] == lines[combined - 1]
    assert linemap.locate(2) == ("a/train_gpt.py", 2)
