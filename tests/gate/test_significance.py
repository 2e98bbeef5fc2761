"""Significance: seeds of one config, the README policy and the one-sided Welch policy, each labelled; waivers."""
from __future__ import annotations

import json

import pytest

from harness.gate.config import ConfigError, GateConfig, Record, load_config, parse_record_bpb
from harness.gate.model import Status


def sig_of(r):
    (f,) = r.folders
    return f.checks["significance"]


def policy(check, key):
    (m,) = [m for m in check.messages if m.key == f"policy:{key}"]
    return m


LOSSES = (1.8905, 1.8894, 1.8916)


def test_different_configs_are_not_seeds_of_one_submission(repo, make, mkrun, run_gate):
    sub = make(runs=[mkrun(1337, 1.8905), mkrun(42, 1.8894, matrix_lr=0.04),
                     mkrun(2025, 1.8916, model_params=27_000_000)])
    repo.pr(sub)
    s = sig_of(run_gate(repo))
    msgs = [m for m in s.messages if m.key.startswith("config:")]
    assert [m.path.rsplit("/", 1)[1] for m in msgs] == ["train_seed2025.log", "train_seed42.log"]
    m42 = next(m for m in msgs if m.path.endswith("train_seed42.log"))
    assert "seed 42 ran a different configuration than seed 1337 (matrix_lr 0.025 vs 0.04)" in m42.text
    m25 = next(m for m in msgs if m.path.endswith("train_seed2025.log"))
    assert "model_params 26,829,913 vs 27,000,000" in m25.text
    assert s.status is Status.FAIL


def test_clear_improvement_meets_both_policies(repo, make, run_gate, scripts):
    repo.pr(make())
    record = Record("old record", [scripts["bpb_of"](x + 0.02) for x in LOSSES], source="test")
    s = sig_of(run_gate(repo, record=record))
    assert s.status is Status.PASS
    readme, welch = policy(s, "readme"), policy(s, "welch")
    assert readme.level == welch.level == "note"
    assert readme.text.startswith("README policy: ≥0.005 nats better at one-sided p<0.01 (one-sample t-test on "
                                  "per-seed val_loss): improvement +0.0200 nats")
    assert welch.text.startswith("Welch policy: one-sided Welch t-test, candidate mean < baseline mean at p < 0.25 (PR #1902 policy)")
    assert readme.path.endswith("submission.json") and readme.line > 1
    cmp_ = s.data["comparison"]
    assert cmp_["readme"]["passed"] and cmp_["welch"]["passed"] and cmp_["blocking"] == "welch"


def test_small_gain_meets_welch_not_readme(repo, make, mkrun, run_gate, scripts):
    """0.002 nats better with tight seeds: the later Welch policy passes, the README's 0.005-nat rule does not."""
    cand = (1.8900, 1.8901, 1.8902)
    repo.pr(make(runs=[mkrun(s, x) for s, x in zip((1, 2, 3), cand, strict=True)]))
    record = Record("frontier", [scripts["bpb_of"](x + 0.002) for x in cand], source="test")
    r = run_gate(repo, record=record)
    s = sig_of(r)
    assert policy(s, "welch").level == "note"
    m = policy(s, "readme")
    assert m.level == "warning" and m.text.endswith("-> not met (informative; not the blocking policy)")
    assert s.status is Status.WARN and r.exit_code() == 0
    # the same numbers under the README policy block
    r = run_gate(repo, record=record, blocking="readme")
    assert sig_of(r).status is Status.FAIL and policy(sig_of(r), "readme").level == "error"
    assert run_gate(repo, record=record, blocking="both").exit_code() == 1
    assert run_gate(repo, record=record, blocking="either").exit_code() == 0


def test_no_improvement_blocks_under_welch(repo, make, run_gate, scripts):
    repo.pr(make())
    record = Record("frontier", [scripts["bpb_of"](x - 0.001) for x in LOSSES], val_loss=[x - 0.001 for x in LOSSES],
                    source="test")
    r = run_gate(repo, record=record)
    s = sig_of(r)
    assert policy(s, "welch").level == "error" and policy(s, "readme").level == "warning"
    assert "(record's nats converted" not in policy(s, "readme").text  # the record's own val_loss was used
    assert r.exit_code() == 1 and "significance FAIL" in r.reason()
    assert run_gate(repo, record=record, blocking="none").exit_code() == 0


def test_systems_only_waiver(repo, make, run_gate, scripts):
    sub = make(meta={"systems_only": True, "systems_only_reason": "FA3 kernels; same model, 9% faster steps"})
    repo.pr(sub)
    record = Record("frontier", [scripts["bpb_of"](x) for x in LOSSES], source="test")
    s = sig_of(run_gate(repo, record=record))
    assert s.status is Status.PASS and s.data["comparison"]["waived"]
    assert policy(s, "welch").text.endswith("(waived: systems-only)")
    (w,) = [m for m in s.messages if m.key == "waiver"]
    assert "FA3 kernels" in w.text and w.line > 1
    # a waiver needs its reason (schema: if systems_only then systems_only_reason)
    bad = make(name="2026-03-26_X", meta={"systems_only": True})
    repo.pr(bad, name="pr2")
    fmt = run_gate(repo, head="pr2").folders[0].checks["format"]
    assert any('"systems_only_reason"' in m.text for m in fmt.messages)


def test_stated_record_in_submission_json(repo, make, run_gate, scripts):
    sub = make(meta={"compared_to": {"name": "2026-03-20 record", "pr": 414,
                                     "val_bpb": [round(scripts["bpb_of"](x + 0.01), 5) for x in LOSSES]}})
    repo.pr(sub)
    s = sig_of(run_gate(repo))
    rec = s.data["comparison"]["record"]
    assert rec["name"] == "2026-03-20 record (PR #414)" and rec["source"] == "submission.json compared_to"
    assert s.status is Status.PASS


def test_record_from_logs_and_cli_options(repo, make, gate_cli, scripts, tmp_path):
    repo.pr(make())
    example = scripts["examples"] / "2026-03-19_LoRA_TTT_DocIsolation"
    r = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr", "--record-logs", example, "--format", "full")
    assert r.code == 0, r.err
    assert "3 seeds vs 2026-03-19_LoRA_TTT_DocIsolation (--record-logs" in r.out
    r = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr", "--record-bpb", "1.0")
    assert r.code == 1 and "significance FAIL" in r.last_err_line
    (tmp_path / "empty").mkdir()
    r = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr", "--record-logs", tmp_path / "empty")
    assert r.code == 2 and "no train log with a reported val_bpb" in r.last_err_line
    r = gate_cli("--repo", repo.path, "--record-bpb", "abc")
    assert r.code == 2 and r.last_err_line.startswith("scorefirst: exit 2: usage error: --record-bpb expects")
    cfg = tmp_path / "gate.toml"
    cfg.write_text('[record]\nname = "frontier"\nval_bpb = 1.0\n[significance]\nblocking = "none"\n')
    r = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr", "--config", cfg, "--format", "json")
    assert r.code == 0
    data = json.loads(r.out)
    comp = data["folders"][0]["checks"]["significance"]["data"]["comparison"]
    assert comp["record"]["source"] == f"config {cfg}" and comp["blocking"] == "none"
    cfg.write_text("[significance]\nblockng = 'none'\n")
    r = gate_cli("--repo", repo.path, "--config", cfg)
    assert r.code == 2 and "significance.blockng: unknown key" in r.last_err_line


def test_config_files(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('cutoff = "2026-06-01"\n[limits]\nartifact_bytes = 16777216\ntrain_seconds = 900\n'
                 '[record]\nlogs = "rec"\n[tracks]\ntimed = ["track_10min_16mb", "track_x"]\n')
    cfg = load_config(p)
    assert cfg.artifact_limit == 16_777_216 and cfg.train_limit_s == 900.0 and cfg.cutoff == "2026-06-01"
    assert cfg.record_logs == str(tmp_path / "rec") and "track_x" in cfg.tracks
    j = tmp_path / "g.json"
    j.write_text(json.dumps({"record": {"val_bpb": [1.1, 1.2], "val_loss": [1.9]}}))
    with pytest.raises(ConfigError, match="val_loss has 1 values but val_bpb has 2"):
        load_config(j)
    for bad, msg in (("[limits]\nartifact_bytes = -1\n", "positive integer"), ("[nope]\n", "unknown section"),
                     ("x = [\n", "invalid TOML"), ('[significance]\nblocking = "maybe"\n', "expected one of")):
        p.write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            load_config(p)
    assert parse_record_bpb("1.08, 1.09").val_bpb == [1.08, 1.09]
    assert GateConfig().to_dict()["record"] is None


def test_strict_practice_keys(tmp_path):
    """The maintainers' practice is the default; each of these makes one part strict."""
    d = GateConfig()
    assert (d.code_counting, d.train_scope, d.train_overrun_s, d.log_mismatch, d.strict_schema_since) == (
        "logged", "data-access", 0.5, "warning", "2026-05-02")
    p = tmp_path / "strict.toml"
    p.write_text('strict_schema_since = "2026-03-01"\n[limits]\ncode_bytes = "folder"\ntrain_scope = "artifact"\n'
                 '[tolerance]\ntrain_overrun_seconds = 0\nlog_mismatch = "error"\n')
    cfg = load_config(p)
    assert (cfg.code_counting, cfg.train_scope, cfg.train_overrun_s, cfg.log_mismatch, cfg.strict_schema_since) == (
        "folder", "artifact", 0.0, "error", "2026-03-01")
    for bad, msg in (('[limits]\ncode_bytes = "zipped"\n', "expected one of logged, submitted, folder"),
                     ("[tolerance]\ntrain_overrun_seconds = -1\n", "seconds >= 0"),
                     ('[tolerance]\nlog_mismatch = "ignore"\n', "expected one of warning, error"),
                     ("strict_schema_since = 2026\n", "expected a date string")):
        p.write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            load_config(p)


def test_welch_numbers():
    """Hand-computed: means 1.11 vs 1.14, sd 0.01 each, n=3: t = 0.03/sqrt(2e-4/3) = 3.674, df = 4, p ≈ 0.0107."""
    from reference_model import stats

    w = stats.welch_test([1.10, 1.11, 1.12], [1.13, 1.14, 1.15], alpha=0.25)
    assert w["t"] == pytest.approx(3.6742, abs=1e-3) and w["df"] == pytest.approx(4.0)
    assert w["p"] == pytest.approx(0.01066, abs=2e-4) and w["passed"]
