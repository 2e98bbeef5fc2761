"""Synthetic submissions run under the tracer in the sandbox: each gets the right verdict per condition, with the
right evidence (tests/fixtures/dynamic/, CPU-sized; a run takes a few seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import sandbox
from harness.dynamic import ScriptOptions, audit_script, stated_env
from harness.ledger import Ledger

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"

pytestmark = pytest.mark.skipif(not sandbox.available("bwrap"),
                                reason=f"no sandbox here ({sandbox.BWRAP_APT})")

# fixture -> expected dynamic verdict per condition (None: not examined without the probe), shared with the GPU check
SPECS = {k: v for k, v in json.loads((FIXTURES / "expected.json").read_text()).items() if not k.startswith("_")}
ELSEWHERE = {"legal_tied_matmul": "the README test below", **{k: "test_dynamic_torchrun.py" for k, v in SPECS.items()
                                                              if v.get("torchrun")}}
EXPECTED = {k: v["verdict"] for k, v in SPECS.items() if k not in ELSEWHERE}


@pytest.fixture(scope="module")
def cache(ref_data):
    return Path(ref_data[0]).parents[3]  # the session cache that already holds the prepared default corpus


def _audit(path: Path, cache: Path, probes: bool, **kw):
    opts = ScriptOptions(path=path, val_tokens=1024, iterations=6, cache_dir=cache, probes=probes, nproc=1, **kw)
    return audit_script(opts)


def _checks(result):
    return {c.id: c for c in result.checks}


@pytest.fixture(scope="module")
def audits(cache):
    out = {}
    for name in EXPECTED:
        out[name] = _audit(FIXTURES / f"{name}.py", cache, SPECS[name]["probe"], env=SPECS[name].get("env", {}))
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
    assert probe["verdict"] == "PASS" and probe["max_abs_diff"] == 0.0
    assert "run again per cut on cpu" in probe["probed"] and "control run" not in probe["probed"]  # bit-exact: none


def test_batched_documents_out_of_order_pass_c3_and_name_the_boundary_context(audits):
    """PR #1626's shape: a document's rows start at its BOS, which the previous document (in a later batch) scores
    as its last target. That leading context is named, not counted as training on the BOS."""
    c = _checks(audits["legal_batched_lora_ttt"].result)["score-before-update"]
    assert c.verdict == "PASS" and "document BOS tokens that updates read only as the first input" in c.message


@pytest.mark.parametrize("name", ["illegal_pre_eval_ttt", "illegal_slot"])
def test_training_before_scoring_is_named(name, audits):
    """The reported score is the gradient-free pass; the updates before it read every scored position."""
    c = _checks(audits[name].result)["score-before-update"]
    fv = c.first_violation
    assert c.verdict == "FAIL" and fv.position == 1 and fv.update_seq < fv.score_seq
    assert ("SGD.step" if name == "illegal_pre_eval_ttt" else "AdamW.step") in fv.detail
    if name == "illegal_pre_eval_ttt":  # every step's reads count, not only some of them: all 1,024 targets
        assert c.message.startswith("1,024 positions were read by an update before they were scored")
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
    assert "when only tokens after 317 changed" in probe.message and probe.max_abs_diff > 0


def test_readme_run_command_switches_ttt_on_and_the_ledger_is_kept(cache, tmp_path):
    """A submission folder whose script defaults TTT off; its README's run command turns it on and launches it with
    torchrun (two gloo ranks here). The script never joins a process group, so each rank runs it alone and rank 0's
    run is audited. It projects onto the vocabulary with ``h @ tok_emb.weight.T`` (no F.linear), which the tracer
    must see."""
    sub = tmp_path / "records" / "MyRun"
    sub.mkdir(parents=True)
    base = (FIXTURES / "pg_base.py").read_text().replace('os.environ.get("TTT_ENABLED", "1")',
                                                         'os.environ.get("TTT_ENABLED", "0")')
    (sub / "pg_base.py").write_text(base)
    shutil.copyfile(FIXTURES / "legal_tied_matmul.py", sub / "train_gpt.py")
    (sub / "README.md").write_text("Run:\n\n    TTT_ENABLED=1 TTT_EPOCHS=1 torchrun --standalone --nproc_per_node=8 "
                                   "train_gpt.py\n")
    opts = ScriptOptions(path=sub, val_tokens=1024, iterations=6, cache_dir=cache, probes=True,
                         keep=tmp_path / "kept")
    env = stated_env(opts)
    assert env["TTT_ENABLED"] == "1" and env["TTT_EPOCHS"] == "1" and env["ITERATIONS"] == "6"
    assert env["TORCHDYNAMO_DISABLE"] == "1" and "DATA_PATH" not in env
    a = audit_script(opts)
    d = a.result.to_dict()
    assert d["verdict"] == {"conditions": SPECS["legal_tied_matmul"]["verdict"],
                            "overall": "PASS"}, [(c["id"], c["message"]) for c in d["checks"] + d["probes"]]
    ran = _checks(a.result)["run-completed"].message
    assert "launched as torchrun --nproc_per_node=2" in ran and "rank 0's run is audited" in ran and "on cpu" in ran
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


def test_a_mixture_normalized_in_numpy_cannot_be_verified_rather_than_failed(audits):
    """PG-NG-005 computed outside torch: the reported score sits below the model's distributions, which the scorer
    exported whole to numpy; the gold-token mixture (which exports nothing) still fails."""
    r = audits["legal_numpy_ngram_tilt"].result
    c = _checks(r)["observed-distributions"]
    assert c.verdict == "WARN" and c.message.startswith("cannot verify") and "PG-NG-005" in c.message
    assert r.reported["val_loss"] < r.reconstructed["val_loss"] - 0.05  # the case that was a C2 FAIL
    assert _checks(audits["illegal_gold_ngram"].result)["observed-distributions"].verdict == "FAIL"


def test_a_warmup_on_validation_tokens_undone_by_a_restore_is_the_gray_ruling(audits):
    """PG-TTT-006: warm-up steps on the last validation sequences, weights restored from a copy, a fresh optimizer."""
    checks = _checks(audits["gray_warmup_restored"].result)
    w = checks["warmup-restored"]
    fv = w.first_violation
    assert w.verdict == "WARN" and "PG-TTT-006" in w.message and "#1530" in w.message
    assert fv.position == 640 and fv.update_seq < fv.score_seq and "reverted by the restore" in fv.detail
    assert checks["score-before-update"].verdict == "PASS" and "restore" in checks["score-before-update"].message


@pytest.mark.parametrize("restore,evidence", [("none", "SGD.step"), ("weights", "optimizer state carried over")])
def test_a_warmup_that_is_not_fully_undone_fails_c3(restore, evidence, cache):
    """No restore: train-then-score (PG-TTT-001). Weights restored but the warm-up optimizer reused: its momentum
    brings the warm-up gradients back at the first TTT step, before the warmed-up positions are scored."""
    a = _audit(FIXTURES / "gray_warmup_restored.py", cache, False, env={"TTT_WARMUP_RESTORE": restore})
    checks = _checks(a.result)
    c = checks["score-before-update"]
    assert c.verdict == "FAIL" and c.first_violation.position == 640 and evidence in c.first_violation.detail
    assert "warmup-restored" not in checks and a.result.to_dict()["verdict"]["conditions"]["C3"] == "FAIL"


def test_a_leak_inside_the_scored_range_past_the_first_cut_is_found(audits):
    """The evaluation is causal for the first half of the split only: the cut a third of the way in compares causal
    windows and passes, a later cut inside the scored range finds the leak."""
    probe = audits["illegal_bidirectional_late"].result.probes[0]
    assert probe.verdict == "FAIL"
    assert "k=317 pass" in probe.probed and "k=829 fail" in probe.probed
    assert probe.message.startswith("cut at 829:")


def test_tail_rescored_by_windows_past_the_end_is_counted_not_accused(audits):
    """A legal score-first TTT whose sliding windows past the split's end score its last targets again (same state,
    shorter context) reports a mean that counts them: no C3/C4 accusation, the repeats named and counted."""
    a = audits["legal_tail_rescored_ttt"]
    checks = _checks(a.result)
    rep = checks["repeated-targets"]
    assert rep.verdict == "WARN" and rep.first_violation.position == 1024 - 64 + 1
    assert "64 repeated predictions" in rep.message and "once-per-target" in rep.message
    assert checks["reported-loss"].verdict == "PASS" and "64 repeats" in checks["reported-loss"].message
    assert checks["reported-bpb"].verdict == "PASS" and checks["reported-from-trained-state"].verdict == "PASS"
    assert a.result.to_dict()["verdict"]["overall"] == "WARN"


def test_a_rescored_tail_neither_excuses_training_first_nor_inflates_the_leak(audits):
    """Training on the validation tokens, then the tail-rescoring scorer: the repeats explain the reported mean, the
    training before the scores is still C3, and the leak magnitude counts the repeats on both sides."""
    d = audits["illegal_pre_eval_ttt_tail"].result.to_dict()
    checks = {c["id"]: c for c in d["checks"]}
    c3 = checks["score-before-update"]
    assert c3["verdict"] == "FAIL" and c3["first_violation"]["position"] == 1 and d["leak"]["sentence"] in c3["message"]
    assert checks["repeated-targets"]["verdict"] == "WARN" and checks["reported-loss"]["verdict"] == "PASS"
    leak = d["leak"]
    assert leak["worth_bpb"] == pytest.approx(leak["first_look_bpb"] - leak["reported_bpb"]) and leak["worth_bpb"] > 0
