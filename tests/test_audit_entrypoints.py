"""Files outside the scored run: a data-download or conversion tool next to train_gpt.py is audited, but its
findings are inactive with the reason; a file the run imports, or any file when the run loads code opaquely,
stays active."""
from __future__ import annotations

from audits.api import audit_paths
from audits.types import Status

TRAIN = "import torch\nimport helper_mod\nprint(torch, helper_mod)\n"
DOWNLOAD = "from huggingface_hub import hf_hub_download\nhf_hub_download('x', 'y')\n"
HELPER = "import urllib.request\n"


def _statuses(result, name):
    fr = next(f for f in result.files if f.path.endswith(name))
    return [(f.rule_id, f.line, f.status, f.status_reason) for f in fr.findings]


def _folder(tmp_path, train=TRAIN, readme="torchrun --nproc_per_node=8 train_gpt.py\npython3 download_data.py\n"):
    sub = tmp_path / "run"
    sub.mkdir()
    (sub / "train_gpt.py").write_text(train)
    (sub / "download_data.py").write_text(DOWNLOAD)
    (sub / "helper_mod.py").write_text(HELPER)
    (sub / "README.md").write_text(readme)
    return sub


def test_download_tool_is_inactive_with_reason(tmp_path):
    result = audit_paths([_folder(tmp_path)])
    got = _statuses(result, "download_data.py")
    assert [(r, line, s) for r, line, s, _ in got] == [("PG-NET", 1, Status.INACTIVE)]
    assert got[0][3] == ("`download_data.py` is not part of the scored run: that is `train_gpt.py`, and no file of it "
                         "mentions `download_data`")


def test_imported_sibling_stays_active(tmp_path):
    result = audit_paths([_folder(tmp_path)])
    assert [(r, line, s) for r, line, s, _ in _statuses(result, "helper_mod.py")] == [("PG-NET", 1, Status.ACTIVE)]


def test_opaque_loading_keeps_every_file_active(tmp_path):
    train = "import importlib\nm = importlib.import_module('down' + 'load_data')\n"
    result = audit_paths([_folder(tmp_path, train=train)])
    assert all(s is Status.ACTIVE for _, _, s, _ in _statuses(result, "download_data.py"))


def test_script_launched_by_torchrun_is_an_entry(tmp_path):
    sub = _folder(tmp_path, readme="torchrun --nproc_per_node=8 download_data.py\n")
    result = audit_paths([sub])
    assert all(s is Status.ACTIVE for _, _, s, _ in _statuses(result, "download_data.py"))
