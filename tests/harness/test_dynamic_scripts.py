"""Synthetic submissions run under the tracer in the sandbox: each gets the right verdict per condition, with the
right evidence (tests/fixtures/dynamic/, CPU-sized; a run takes a few seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import sandbox
from harness.dynamic import ScriptOptions, audit_script, stated_env
from harness.ledger import Ledger

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"

pytestmark = pytest.mark.skipif(not (sandbox.available("bwrap") or sandbox.available("unshare")),
                                reason=f"no sandbox here ({sandbox.BWRAP_APT})")

# fixture -> expected dynamic verdict per condition (None: not examined without probes)
EXPECTED = {
    "legal_lora_ttt": {"C1": "PASS", "C2": "PASS", "C3": "PASS", "C4": "PASS"},
    "illegal_multi_epoch_last": {"C1": None, "C2": "PASS", "C3": "FAIL", "C4": "FAIL"},
    "illegal_min_nll_ttt": {"C1": None, "C2": "PASS", "C3": "FAIL", "C4": "FAIL"},
    "illegal_pre_eval_ttt": {"C1": None, "C2": "PASS", "C3": "FAIL", "C4": "PASS"},
    "illegal_rescore_after_ttt": {"C1": None, "C2": "PASS", "C3": "FAIL", "C4": "FAIL"},
    "illegal_slot": {"C1": None, "C2": "PASS", "C3": "FAIL", "C4": "PASS"},
    "illegal_gold_ngram": {"C1": None, "C2": "FAIL", "C3": "PASS", "C4": "WARN"},
    "illegal_bidirectional_eval": {"C1": "FAIL", "C2": "PASS", "C3": "PASS", "C4": "PASS"},
}
PROBED = {"legal_lora_ttt", "illegal_bidirectional_eval"}


@pytest.fixture(scope="module")
def cache(ref_data):
    return Path(ref_data[0]).parents[3]  # the session cache that already holds the prepared default corpus


def _audit(path: Path, cache: Path, probes: bool, **kw):
    opts = ScriptOptions(path=path, val_tokens=1024, iterations=6, cache_dir=cache, probes=probes, **kw)
    return audit_script(opts)


def _checks(result):
    return {c.id: c for c in result.checks}


@pytest.fixture(scope="module")
def audits(cache):
    out = {}
    for name in EXPECTED:
        out[name] = _audit(FIXTURES / f"{name}.py", cache, name in PROBED)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_per_condition(name, audits):
    a = audits[name]
    d = a.result.to_dict()
    assert a.sandbox.exit_code == 0, a.sandbox.tail()
    assert d["verdict"]["conditions"] == EXPECTED[name], [(c["id"], c["verdict"], c["message"])
                                                         for c in d["checks"] + d["probes"]]
    assert d["mode"] == "script" and d["script"].endswith(f"{name}.py")
    assert d["ledger"]["complete"] and d["ledger"]["positions"] == 1025 and d["ledger"]["path"] is None
    assert d["sandbox"]["network_attempts"] == [] and d["sandbox"]["exit_code"] == 0
    checks = _checks(a.result)
    assert checks["run-completed"].verdict == "PASS" and checks["coverage"].verdict == "PASS"
    assert checks["reported-bpb"].verdict == "PASS"  # the fixtures' byte LUT is the canonical one


def test_legal_lora_reports_exactly_its_first_predictions(audits):
    d = audits["legal_lora_ttt"].result.to_dict()
    assert d["reconstructed"]["val_loss"] == pytest.approx(d["reported"]["val_loss"], abs=1e-6)
    assert d["ledger"]["update_events"] > 6  # training steps plus one Adam step per trained chunk
    probe = d["probes"][0]
    assert probe["verdict"] == "PASS" and probe["max_abs_diff"] == 0.0 and "run twice" in probe["probed"]


@pytest.mark.parametrize("name", ["illegal_pre_eval_ttt", "illegal_slot"])
def test_training_before_scoring_is_named(name, audits):
    """The reported score is the gradient-free pass; the updates before it read every scored position."""
    c = _checks(audits[name].result)["score-before-update"]
    fv = c.first_violation
    assert c.verdict == "FAIL" and fv.position == 1 and fv.update_seq < fv.score_seq
    assert ("SGD.step" if name == "illegal_pre_eval_ttt" else "AdamW.step") in fv.detail
    assert "gradients" in _checks(audits[name].result)["run-completed"].message
    assert audits[name].result.timeline.violations


@pytest.mark.parametrize("name", ["illegal_multi_epoch_last", "illegal_min_nll_ttt", "illegal_rescore_after_ttt"])
def test_reported_after_training_is_named(name, audits):
    r = audits[name].result
    c = _checks(r)["reported-from-trained-state"]
    fv = c.first_violation
    assert c.verdict == "FAIL" and fv.update_seq < fv.score_seq and "predicted again" in fv.detail
    assert _checks(r)["reported-loss"].verdict == "FAIL"
    assert r.reported["val_loss"] < r.reconstructed["val_loss"]  # the leak makes the reported score better


def test_gold_token_mixing_is_a_distribution_finding(audits):
    r = audits["illegal_gold_ngram"].result
    c = _checks(r)["observed-distributions"]
    assert c.verdict == "FAIL" and "no update explains it" in c.message
    assert r.reported["val_loss"] < r.reconstructed["val_loss"] - 0.1


def test_bidirectional_attention_fails_the_probe_with_the_first_position(audits):
    probe = audits["illegal_bidirectional_eval"].result.probes[0]
    assert probe.name == "future-perturbation" and probe.verdict == "FAIL"
    assert "changed when only tokens after 341" in probe.message and probe.max_abs_diff > 0


def test_readme_run_command_switches_ttt_on_and_the_ledger_is_kept(cache, tmp_path):
    """A submission folder whose script defaults TTT off; its README's run command turns it on."""
    sub = tmp_path / "records" / "MyRun"
    sub.mkdir(parents=True)
    base = (FIXTURES / "pg_base.py").read_text().replace('os.environ.get("TTT_ENABLED", "1")',
                                                         'os.environ.get("TTT_ENABLED", "0")')
    (sub / "pg_base.py").write_text(base)
    shutil.copyfile(FIXTURES / "legal_score_first_ttt.py", sub / "train_gpt.py")
    (sub / "README.md").write_text("Run:\n\n    TTT_ENABLED=1 TTT_EPOCHS=1 torchrun --standalone --nproc_per_node=8 "
                                   "train_gpt.py\n")
    opts = ScriptOptions(path=sub, val_tokens=1024, iterations=6, cache_dir=cache, probes=True,
                         keep=tmp_path / "kept")
    env = stated_env(opts)
    assert env["TTT_ENABLED"] == "1" and env["TTT_EPOCHS"] == "1" and env["ITERATIONS"] == "6"
    assert env["TORCHDYNAMO_DISABLE"] == "1" and "DATA_PATH" not in env
    a = audit_script(opts)
    d = a.result.to_dict()
    assert d["verdict"] == {"conditions": {"C1": "PASS", "C2": "PASS", "C3": "PASS", "C4": "PASS"},
                            "overall": "PASS"}, [(c["id"], c["message"]) for c in d["checks"] + d["probes"]]
    led = Ledger(d["ledger"]["path"])
    assert led.complete and d["ledger"]["path"].startswith(str(tmp_path / "kept"))
    assert any(m.get("event") == "report" and "legal_ttt" in m.get("line", "") for m in led.metas)
    assert "legal_ttt" in a.sandbox.stdout
    ttt_updates = [i for i in range(len(led.events)) if led.events["kind"][i] == 2 and len(led.event_ranges(i))]
    assert ttt_updates  # TTT ran: updates that read validation positions


def test_a_crashing_script_is_reported(cache, tmp_path):
    bad = tmp_path / "train_gpt.py"
    bad.write_text("import sys\nprint('starting')\nsys.exit('no GPU found')\n")
    a = _audit(bad, cache, probes=True)
    c = _checks(a.result)["run-completed"]
    assert c.verdict == "FAIL" and "no GPU found" in c.message and a.result.probes == []
