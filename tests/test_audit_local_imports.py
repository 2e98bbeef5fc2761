"""SF-IMPORT-001 on real folders: a module next to the audited file is named, third-party ones never are.

The whole-script fixtures are audited as in-memory sources (no folder), so a sibling file needs a test of its own.
"""
from __future__ import annotations

import json

from audits.api import audit_paths
from audits.source import sibling_modules
from audits.types import Status

TRAIN = '''\
import os
import torch
import numpy as np
import sentencepiece as spm

from pg_base import eval_val, train
import helpers.io as hio
import importlib
extra = importlib.import_module("pg_base")


def main():
    model = train()
    print(eval_val(model), hio, os, np, spm, torch)


if __name__ == "__main__":
    main()
'''

HELPER = '''\
import torch


def train():
    return torch.nn.Linear(2, 2)


def eval_val(model):
    return 0.0
'''


def _findings(result, path, rule="SF-IMPORT-001"):
    fr = next(f for f in result.files if f.path.endswith(path))
    assert fr.error is None, fr.error
    return [(f.line, f.message) for f in fr.findings if f.rule_id == rule and f.status is Status.ACTIVE]


def _folder(tmp_path):
    sub = tmp_path / "MyRun"
    (sub / "helpers").mkdir(parents=True)
    (sub / "train_gpt.py").write_text(TRAIN)
    (sub / "pg_base.py").write_text(HELPER)
    (sub / "helpers" / "__init__.py").write_text("")
    (sub / "helpers" / "io.py").write_text("X = 1\n")
    (sub / "README.md").write_text("torchrun --nproc_per_node=8 train_gpt.py\n")
    return sub


def test_sibling_modules_are_read_from_file_names_only(tmp_path):
    sub = _folder(tmp_path)
    (sub / "data").mkdir()  # no Python inside: not a package
    (sub / "final_model.int8.ptz").write_bytes(b"\0")
    assert sibling_modules(sub / "train_gpt.py") == {"helpers": "helpers/", "pg_base": "pg_base.py"}
    assert "train_gpt" in sibling_modules(sub / "pg_base.py")


def test_import_of_a_sibling_file_is_named_at_its_line(tmp_path):
    sub = _folder(tmp_path)
    result = audit_paths([sub / "train_gpt.py"])
    got = _findings(result, "train_gpt.py")
    assert [line for line, _ in got] == [6, 7, 9]
    # pg_base.py is audited with the script (one program): its import is a note about uncounted bytes
    assert got[0][1] == ("`pg_base` is pg_base.py in this folder: audited here with this file as one program, but "
                         "its bytes are not counted in the artifact (PG-SIZE-001: all counted code should live in "
                         "train_gpt.py)")
    assert "neither audited here" in got[2][1]  # importlib.import_module("pg_base") is not followed
    assert "`helpers.io` is helpers/ in this folder" in got[1][1]
    fr = next(f for f in result.files if f.path.endswith("train_gpt.py"))
    assert next(f for f in fr.findings if f.rule_id == "SF-IMPORT-001").snippet == "from pg_base import eval_val, train"


def test_third_party_and_stdlib_imports_are_never_flagged(tmp_path):
    (tmp_path / "train_gpt.py").write_text("import torch\nimport numpy\nimport sentencepiece\nimport os\n"
                                          "from torch import nn\nprint(torch, numpy, sentencepiece, os, nn)\n")
    result = audit_paths([tmp_path / "train_gpt.py"])
    assert _findings(result, "train_gpt.py") == []


def test_folder_audit_still_audits_the_helper_itself(tmp_path, cli):
    sub = _folder(tmp_path)
    (sub / "pg_base.py").write_text("import urllib.request\n" + HELPER)
    r = cli("audit", str(sub), "--format", "json", "--no-cache")
    data = json.loads(r.out)
    files = {f["path"].rsplit("/", 1)[-1]: f for f in data["files"]}
    assert {"train_gpt.py", "pg_base.py", "io.py"} <= set(files)
    assert "__init__.py" not in files  # an empty module in a folder holds no code: skipped, not an error
    assert data["verdict"]["incomplete"] is False
    assert [f["line"] for f in files["train_gpt.py"]["findings"] if f["rule_id"] == "SF-IMPORT-001"] == [6, 7, 9]
    helper = [(f["rule_id"], f["line"]) for f in files["pg_base.py"]["findings"]]
    assert helper == [("PG-NET", 1)], helper  # audited as any other file; its own `import torch` is not local


def test_cache_key_depends_on_the_sibling_files(tmp_path):
    sub = _folder(tmp_path)
    cache = tmp_path / "cache"
    assert [ln for ln, _ in _findings(audit_paths([sub / "train_gpt.py"], cache_dir=cache), "train_gpt.py")] == [6, 7, 9]
    (sub / "pg_base.py").unlink()
    assert [ln for ln, _ in _findings(audit_paths([sub / "train_gpt.py"], cache_dir=cache), "train_gpt.py")] == [7]
