"""An illegal path that only an environment default keeps off: inactive when nothing says otherwise, a warning that
names the key when the folder's README, logs or submission.json describe that feature, an error when a run
command turns it on."""
from __future__ import annotations

import shutil
from pathlib import Path

from audits.api import audit_paths
from audits.runevidence import default_mention, feature_stem
from audits.types import Severity, Status

SCRIPT = Path(__file__).parent / "fixtures" / "audit" / "adv_env_disabled_ttt.py"
STEP_LINE = 373  # `opt.step()` of the TTT path behind TTT_ENABLED (default "0")


def _folder(tmp_path, readme: str | None = None, log: str | None = None) -> Path:
    sub = tmp_path / "run"
    sub.mkdir()
    shutil.copy(SCRIPT, sub / "train_gpt.py")
    if readme is not None:
        (sub / "README.md").write_text(readme)
    if log is not None:
        (sub / "train_seed1337.log").write_text(log)
    return sub


def _step_finding(result):
    return next(f for f in result.findings if f.rule_id == "PG-TTT-001" and f.line == STEP_LINE)


def test_nothing_says_otherwise_stays_inactive(tmp_path):
    f = _step_finding(audit_paths([_folder(tmp_path, readme="# 9L baseline\n\nSliding-window eval, int8+zlib.\n")]))
    assert f.status is Status.INACTIVE and f.default_keys == ["TTT_ENABLED=0"]


def test_readme_describing_ttt_makes_it_a_warning_that_names_the_key(tmp_path):
    result = audit_paths([_folder(tmp_path, readme="# 9L + SGD TTT\n\nval_bpb 1.19 after TTT.\n")])
    f = _step_finding(result)
    assert (f.status, f.severity) == (Status.ACTIVE, Severity.WARNING)
    assert "off only by the default TTT_ENABLED=0" in f.message and "illegal when TTT_ENABLED is set" in f.message
    assert result.overall.value == "WARN"


def test_logged_ttt_phase_is_evidence_too(tmp_path):
    f = _step_finding(audit_paths([_folder(tmp_path, log="step:100 train_loss:3.1\nttt_epoch:1/3 loss:2.9\n")]))
    assert f.severity is Severity.WARNING and f.status is Status.ACTIVE


def test_run_command_that_turns_it_on_is_an_error(tmp_path):
    result = audit_paths([_folder(tmp_path, readme="TTT_ENABLED=1 torchrun --nproc_per_node=8 train_gpt.py\n")])
    f = _step_finding(result)
    assert (f.status, f.severity) == (Status.ACTIVE, Severity.ERROR)


def test_feature_stems():
    assert feature_stem("TTT_ENABLED") == "ttt"
    assert feature_stem("USE_NGRAM_EVAL") == "ngram_eval"
    assert default_mention(["NGRAM_EVAL_ENABLED=0"], "we mix an n-gram eval cache") is None
    assert default_mention(["NGRAM_EVAL_ENABLED=0"], "ngram eval cache: on") == ("NGRAM_EVAL_ENABLED=0", "ngram eval")
    assert default_mention(["SEED=1337"], "seed 1337") is None


def test_run_command_pointing_training_at_validation_files(tmp_path):
    sub = tmp_path / "run"
    sub.mkdir()
    (sub / "train_gpt.py").write_text(
        "import os, glob\n"
        "class Hyperparameters:\n"
        "    data_path = os.environ.get('DATA_PATH', './data/datasets/fineweb10B_sp1024')\n"
        "    train_files = os.environ.get('TRAIN_FILES', os.path.join(data_path, 'fineweb_train_*.bin'))\n"
        "args = Hyperparameters()\n"
        "print(sorted(glob.glob(args.train_files)))\n")
    assert audit_paths([sub]).overall.value == "PASS"
    (sub / "README.md").write_text("TRAIN_FILES=./data/fineweb_val_*.bin torchrun --nproc_per_node=8 train_gpt.py\n")
    result = audit_paths([sub])
    f = next(f for f in result.findings if f.rule_id == "PG-DATA-001")
    assert (f.line, f.status, f.severity) == (4, Status.ACTIVE, Severity.ERROR)
    assert "resolve to the validation split (as stated for TRAIN_FILES)" in f.message
