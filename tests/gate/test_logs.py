"""The log parser (official grammar, reference_model.runlog, the bundled example records) and the logs check."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from harness.gate import checks
from harness.gate.config import GateConfig
from core.runlogs import find_logs, parse_log, read_log
from harness.gate.model import Status


def test_official_dialect(scripts, mkrun):
    run = mkrun(1337, 1.8905, calibration_s=3.5, ttt_phase_s=12.0)
    log = parse_log(scripts["official_log"](run, scripts["clean"]), "train_seed1337.log")
    assert log.embedded_code == scripts["clean"].rstrip("\n")
    assert (log.seed, log.seed_from_name, log.steps, log.total_steps) == (1337, 1337, 7194, 20000)
    assert log.train_ms == 600_010.0 and log.step_avg_ms == 83.4 and log.stopped_early
    assert log.calibration_s == pytest.approx(3.5) and log.train_total_s == pytest.approx(603.51)
    # the raw "Serialized model: … bytes" line comes first; the compressed one is the artifact
    assert (log.model_bytes, log.codec, log.code_bytes) == (15_870_000, "int6+lzma", len(scripts["clean"].encode()))
    assert log.total_bytes == 15_870_000 + len(scripts["clean"].encode())
    assert log.val_tokens == scripts["val_tokens"] and log.model_params == 26_829_913
    labels = [(s.label, s.in_training) for s in log.stages]
    assert labels == [("step:0", True), ("step:7194", True), ("final_int6_sliding_window", False), ("legal_ttt", False)]
    final = log.final
    assert final.label == "legal_ttt" and final.val_loss == pytest.approx(1.8905, abs=1e-8)
    assert final.bpb_decimals == 8 and final.exact_line == final.line + 1
    assert log.eval_total_s == pytest.approx(74.0 + 409.0 + 12.0)
    assert "matrix_lr" in log.config and "seed" not in log.config
    assert "Driver" not in " ".join(log.config)  # the environment dump between '=' lines is not config


def test_runlog_dialect_reads_what_the_reference_runner_writes(scripts, mkrun):
    from reference_model import runlog

    run = mkrun(42, 1.9)
    log = parse_log(scripts["runlog_log"](run, scripts["clean"]), "train_seed42.log")
    assert log.seed == 42 and log.steps == 7194 and log.model_bytes == 15_870_000
    assert [s.label for s in log.eval_stages] == ["DIAGNOSTIC post_ema", "final_int6_sliding_window", "legal_ttt"]
    assert log.eval_stages[0].diagnostic and log.final.label == "legal_ttt"
    assert log.eval_total_s == pytest.approx(9.0 + 74.0 + 409.0)  # a diagnostic evaluation still takes eval time
    # every line runlog writes goes through: the train and val lines and parse_line's own view of them
    line = runlog.val_line(7194, 20000, 1.91, 1.131, 600_010.0, 7194)
    assert runlog.parse_line(line)["val_bpb"] == 1.131
    assert parse_log(line + "\n", "x.log").stages[0].val_bpb == 1.131
    rows = runlog.eval_lines("ILLEGAL_rescore", {"val_loss": 1.5, "val_bpb": 0.9}, 1000.0,
                             "ILLEGAL:PG-TTT-004 negative_control")
    neg = parse_log("step:1/2 train_loss:2.0 train_time:1ms step_avg:1.00ms\n" + "\n".join(rows) + "\n", "x.log")
    assert neg.final.label == "ILLEGAL_rescore" and "ILLEGAL" in neg.final.extra


def test_phases_and_stated_totals():
    text = "\n".join([
        "seed:7", "step:10/10 train_loss:2.0 train_time:590000ms step_avg:59000.00ms",
        "gptq:collected hessians time:4.5s", "calibration_time_ms:1500",
        "artifact_production_wallclock: 597.2s (must be < 600)",
        "ttt_chunk:100/200 elapsed:40.0s", "ngram_precompute time:20.0s",
        "final_ttt val_loss:1.9 val_bpb:1.125 eval_time:300000ms",
        "total_eval_time:333.3s",
    ]) + "\n"
    log = parse_log(text, "seed7.log")
    assert log.calibration_s == pytest.approx(6.0)
    assert log.train_total_s == pytest.approx(596.0)  # the loop and calibration (training-data access)
    assert log.train_seconds(count_artifact=True) == pytest.approx(597.2)  # train_scope = "artifact": stated wins
    assert log.eval_total_s == pytest.approx(333.3)
    assert [p.kind for p in log.phases] == ["calibration", "calibration", "artifact_total", "eval", "eval_total"]


EXAMPLE_NAMES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "audits" / "examples" / "records"
                                        / "track_10min_16mb").iterdir())


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_bundled_example_records(scripts, name):
    """Every bundled example's logs parse; their reported stages agree with its submission.json."""
    root = scripts["examples"] / name
    sub = json.loads((root / "submission.json").read_text())
    f = checks.load_folder(f"records/track_10min_16mb/{name}", root, "added", [])
    assert sorted(lg.run_seed for lg in f.logs) == sorted(sub["seeds"])
    finals = [lg.final for lg in f.logs]
    assert statistics.fmean(s.val_bpb for s in finals) == pytest.approx(sub["val_bpb"], abs=1e-4)
    assert statistics.fmean(s.val_loss for s in finals) == pytest.approx(sub["val_loss"], abs=1e-4)
    cfg = GateConfig()
    logs = checks.logs_check(f, cfg)
    assert logs.status is Status.PASS, [m.text for m in logs.messages]
    budgets = checks.budgets_check(f, cfg)
    assert budgets.status is Status.PASS, [m.text for m in budgets.messages]
    assert max(budgets.data["artifact_bytes"]) == sub["bytes_total"]


def test_example_calibration_counts_toward_training(scripts):
    root = scripts["examples"] / "2026-04-11_SP8192_PreQuantTTT_AdamW_GPTQ"
    (log,) = [read_log(p, p.name) for p in find_logs(root) if p.name == "train_seed0.log"]
    assert log.code_bytes is None and log.derived_code_bytes == 24_635  # from Total - Serialized
    assert log.train_total_s == pytest.approx(588.007 + 4.2)
    assert log.val_tokens == 40_540_160


def logs_of(r):
    (f,) = r.folders
    return f.checks["logs"]


def test_stale_log_code_size(repo, make, mkrun, run_gate):
    sub = make(runs=[mkrun(1337, 1.8905), mkrun(42, 1.8894, code_size=31_505), mkrun(2025, 1.8916)])
    repo.pr(sub)
    r = run_gate(repo)
    logs = logs_of(r)
    (m,) = [m for m in logs.messages if m.key == "code-size"]
    log_text = sub.files()[f"{sub.folder}/train_seed42.log"].splitlines()
    assert m.path == f"{sub.folder}/train_seed42.log" and m.line == log_text.index("Code size: 31505 bytes") + 1
    size = len(sub.files()[f"{sub.folder}/train_gpt.py"].encode())
    assert f"code size (`Code size:`) is 31,505 bytes but the submitted train_gpt.py is {size:,} bytes " \
           f"({size - 31_505:+,})" in m.text
    # the maintainers' practice (#86): a person looks; strict configuration blocks
    assert m.level == "warning" and logs.status is Status.WARN
    strict = logs_of(run_gate(repo, log_mismatch="error"))
    (m,) = [m for m in strict.messages if m.key == "code-size"]
    assert m.level == "error" and "stale log, #86" in m.text and strict.status is Status.FAIL


def test_logged_source_must_be_the_submitted_script(repo, make, mkrun, run_gate, scripts):
    sub = make()
    files = sub.files()
    path = f"{sub.folder}/train_seed42.log"
    files[path] = files[path].replace("val_tokens = load_validation_tokens(", "val_tokens = load_tokens(", 1)
    repo.pr(files=files)
    (m,) = [m for m in logs_of(run_gate(repo)).messages if m.key == "embedded-code"]
    want = scripts["clean"].splitlines().index('val_tokens = load_validation_tokens("fineweb_val_*.bin")') + 1
    assert m.path == path and m.line == want and "differs from the submitted train_gpt.py" in m.text


def test_code_hash_echo(repo, make, mkrun, run_gate, scripts):
    import hashlib

    good = hashlib.sha256(scripts["clean"].encode()).hexdigest()
    sub = make(runs=[mkrun(1, 1.89, extra_header=(f"code_sha256:{good}",)),
                     mkrun(2, 1.89, extra_header=("code_sha256:" + "0" * 64,)), mkrun(3, 1.89)])
    repo.pr(sub)
    msgs = [m for m in logs_of(run_gate(repo)).messages if m.key.startswith("hash:")]
    assert [m.path.rsplit("/", 1)[1] for m in msgs] == ["train_seed2.log"]


def test_missing_seed_is_located_in_submission_json(repo, make, mkrun, run_gate):
    sub = make(runs=[mkrun(1337, 1.8905), mkrun(42, 1.8894)], meta={"seeds": [1337, 42, 2025]})
    repo.pr(sub)
    r = run_gate(repo)
    (m,) = [m for m in logs_of(r).messages if m.key == "missing-seed:2025"]
    text = sub.files()[f"{sub.folder}/submission.json"].splitlines()
    line = next(i for i, ln in enumerate(text, 1) if ln.strip() == "2025")
    assert (m.path, m.line, m.column) == (f"{sub.folder}/submission.json", line, 5)
    assert m.text == ("seed 2025 is listed in submission.json but no train log reports it "
                      "(logs found for seeds: 42, 1337; the significance check counts only logged runs)")
    assert m.level == "warning"  # the significance check blocks on the missing run
    sig = r.folders[0].checks["significance"]
    assert sig.status is Status.FAIL and "2 runs with a reported score" in sig.messages[0].text


def test_seed_in_file_name_must_match(repo, make, mkrun, run_gate, scripts):
    sub = make()
    files = sub.files()
    files[f"{sub.folder}/train_seed7.log"] = files.pop(f"{sub.folder}/train_seed2025.log")
    repo.pr(files=files)
    msgs = logs_of(run_gate(repo)).messages
    (m,) = [m for m in msgs if m.key == "seed-name"]
    assert m.path.endswith("train_seed7.log") and "file name says seed 7 but the log says seed:2025" in m.text


def test_claims_must_agree_with_logs(repo, make, run_gate):
    sub = make(meta={"val_bpb": 1.1010, "bytes_code": 999, "bytes_total": 12_000_000})
    repo.pr(sub)
    msgs = {m.key: m for m in logs_of(run_gate(repo)).messages}
    assert "submission.json val_bpb 1.101 but the logs' reported stages average 1.11966" in msgs["agree:val_bpb"].text
    # a better score than any logged stage blocks; metadata byte counts are for a person (budgets judge the logs)
    assert msgs["agree:val_bpb"].level == "error" and "not supported by the logs" in msgs["agree:val_bpb"].text
    assert msgs["agree:val_bpb"].line > 1 and msgs["bytes_code"].level == "warning"
    assert "does not match the logged artifacts" in msgs["bytes_total"].text


def test_claimed_score_of_one_seed_or_worse_is_a_warning(repo, make, mkrun, run_gate):
    """Launch-era records stated one run's score rather than the mean; a conservative claim is no risk."""
    runs = [mkrun(1337, 1.880), mkrun(42, 1.890), mkrun(2025, 1.900)]
    repo.pr(make(runs=runs))
    bpb = {row["seed"]: row["val_bpb"] for row in run_gate(repo).folders[0].seeds}
    for claimed, says in ((bpb[1337], "it is seed 1337's `legal_ttt` stage"), (bpb[2025] + 0.01, "worse than")):
        sub = make(runs=runs, meta={"val_bpb": claimed})
        repo.pr(sub)
        (m,) = [m for m in logs_of(run_gate(repo)).messages if m.key == "agree:val_bpb"]
        assert m.level == "warning" and says in m.text, m.text


def test_inflated_byte_denominator(repo, make, mkrun, run_gate):
    """A LUT that double-counts the leading space inflates bytes by ~17% (#1719): flagged at the exact line."""
    runs = [mkrun(s, 1.8905, byte_scale=1.1746) for s in (1337, 42, 2025)]
    sub = make(runs=runs)
    repo.pr(sub)
    r = run_gate(repo)
    msgs = [m for m in logs_of(r).messages if m.rule == "PG-BPB-001" and m.level == "error"]
    assert len(msgs) == 3
    text = sub.files()[f"{sub.folder}/train_seed1337.log"].splitlines()
    m = next(m for m in msgs if m.path.endswith("train_seed1337.log"))
    assert text[m.line - 1].startswith("legal_ttt_exact ")
    assert "+17.46% from the canonical 151,080,000" in m.text
    assert r.exit_code() == 1


def test_denominator_tolerance_and_precision(mkrun, scripts):
    cfg = GateConfig()
    for scale, bad in ((1.004, False), (1.02, True), (0.95, True)):
        log = parse_log(scripts["official_log"](mkrun(1, 1.9, byte_scale=scale), scripts["clean"]), "a.log")
        c = checks.Check("logs")
        checks._log_stages(c, log, cfg)
        assert any(m.key == "denominator" for m in c.messages) is bad, scale


def test_target_gate_counters_and_reported_stage_missing(repo, make, mkrun, run_gate):
    runs = [mkrun(1, 1.89, gate_counters="ngram gates within_gate=9866847 word_gate=0 agree2plus=303177"),
            mkrun(2, 1.89, stages=()), mkrun(3, 1.89)]
    repo.pr(make(runs=runs))
    msgs = logs_of(run_gate(repo)).messages
    assert {m.key for m in msgs if m.rule == "PG-NG-004"} == {"gate:within_gate", "gate:agree2plus"}
    (m,) = [m for m in msgs if m.key == "no-final"]
    assert m.path.endswith("train_seed2.log") and "the reported score cannot be read" in m.text


def test_find_logs_skips_non_logs(tmp_path, scripts, mkrun):
    (tmp_path / "requirements.txt").write_text("torch\n")
    (tmp_path / "notes.txt").write_text("some notes\n")
    (tmp_path / "train.log").write_text(scripts["official_log"](mkrun(1, 1.9), scripts["clean"]))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ablation.log").write_text("step:1/2 train_loss:2.0\n")
    assert [p.name for p in find_logs(tmp_path)] == ["train.log"]
    (tmp_path / "train.log").unlink()
    assert [p.name for p in find_logs(tmp_path)] == ["ablation.log"]


def test_hostile_lines_parse_in_linear_time():
    """Long runs of key or digit characters must not make the token expressions backtrack (a CI-time DoS)."""
    import time

    lines = ["a=" + "1" * 60_000 + "x", "time:" + "9" * 60_000 + "q", "a" * 60_000, "a:" * 30_000, "x.5" * 20_000,
             "val_loss:" + "9" * 60_000 + " val_bpb:1", "a" * 70_000 + " val_bpb:1.0 val_loss:2.0"]
    start = time.perf_counter()
    log = parse_log("\n".join(lines * 2) + "\n", "hostile.log")
    assert time.perf_counter() - start < 2.0
    assert log.final is None or log.final.val_bpb == 1.0


def test_deeply_nested_submission_json(tmp_path):
    root = tmp_path / "records" / "track_10min_16mb" / "x"
    root.mkdir(parents=True)
    (root / "submission.json").write_text("[" * 100_000 + "]" * 100_000)
    f = checks.load_folder("records/track_10min_16mb/x", root, "added", [])
    assert f.submission is None and f.sub_error == "1:65:nests deeper than 64 levels"  # refused before parsing
    (root / "submission.json").write_text('{"a":' * 900 + "1" + "}" * 900)
    f = checks.load_folder("records/track_10min_16mb/x", root, "added", [])
    c = checks.Check("format")
    checks._submission_format(c, f, GateConfig())
    assert c.messages


def test_claimed_score_of_an_earlier_stage_is_a_warning(repo, make, mkrun, run_gate):
    """A record may state the mean of an earlier stage (sliding window) when a later one (a TTT try) is worse."""
    runs = [mkrun(1337, 1.880), mkrun(42, 1.884), mkrun(2025, 1.900)]
    repo.pr(make(runs=runs))
    rows = run_gate(repo).folders[0].seeds
    first = [next(st for st in row["stages"] if st["label"] == "final_int6_sliding_window") for row in rows]
    claimed = sum(st["val_bpb"] for st in first) / 3
    repo.pr(make(runs=runs, meta={"val_bpb": claimed}))
    (m,) = [m for m in logs_of(run_gate(repo)).messages if m.key == "agree:val_bpb"]
    assert m.level == "warning" and "it is the mean of the `final_int6_sliding_window` stages (3 runs)" in m.text


def test_progress_lines_are_running_totals_not_phases():
    """Per-chunk lines of a TTT loop carry its running time: summed, one record's ~496 s eval read as 40,121.8 s.
    The loop counts once (its last total), and not at all when the stage after it was timed around it."""
    head = ["seed:1", "step:10/10 train_loss:2.0 train_time:590000ms step_avg:59000.00ms"]
    enclosed = head + [f"ttt_chunk [{i}/200] bpb=1.1 time={i * 2.4:.1f}s" for i in range(1, 201)] + [
        "legal_ttt val_loss:1.9 val_bpb:1.125 eval_time:481000ms"]
    log = parse_log("\n".join(enclosed) + "\n", "a.log")
    assert log.eval_total_s == pytest.approx(481.0) and not [p for p in log.phases if p.kind == "eval"]
    before = head + [f"ttt_adamw:epoch {i}/8 loss:2.8 time:{i * 15.0:.1f}s" for i in range(1, 9)] + [
        "ttt_adamw:done elapsed=120.0s", "DIAGNOSTIC post_ttt val_loss:2.7 val_bpb:1.06 eval_time:5000ms",
        "final_int6_sliding_window val_loss:1.9 val_bpb:1.125 eval_time:75000ms"]
    log = parse_log("\n".join(before) + "\n", "b.log")
    (phase,) = [p for p in log.phases if p.kind == "eval"]
    assert (phase.name, phase.seconds, phase.line) == ("ttt_adamw loop (8 progress lines)", 120.0, 10)
    assert log.eval_total_s == pytest.approx(200.0)


def test_later_official_log_grammar():
    """Later official scripts: an epoch timestamp before each line, `key: value`, bare `N/M` steps, train_time in
    minutes, a spaced stopping line, code size compressed and uncompressed."""
    text = "\n".join([
        "1776142719.100 seed: 42",
        "1776142719.768 5/20000 train_loss: 8.2549 train_time: 0.0m tok/s: 9808821",
        "1776143299.752 4500/20000 train_loss: 2.8491 train_time: 9.0m tok/s: 6552777",
        "1776143349.278 stopping_early: wallclock_cap train_time: 587091ms step: 4832/20000",
        "1776143356.801 Code size (uncompressed): 139831 bytes",
        "1776143356.801 Code size (compressed): 28599 bytes",
        "1776143444.369 Serialized model quantized+brotli: 15968098 bytes",
        "1776143444.369 Total submission size quantized+brotli: 15996697 bytes",
        "1776144156.999 quantized_ttt_phased val_loss:2.76951521 val_bpb:1.07216564 eval_time:500104ms",
        "1776144156.999 total_eval_time:500.1s",
    ]) + "\n"
    log = parse_log(text, "logs/train0.txt")
    assert (log.seed, log.steps, log.total_steps, log.train_ms, log.stopped_early) == (42, 4832, 20000, 587091.0,
                                                                                       True)
    assert log.step_ms == pytest.approx(587091.0 / 4832)
    assert (log.code_bytes, log.code_compressed_bytes, log.counted_code_bytes) == (139831, 28599, 28599)
    assert log.derived_code_bytes == 139831 and log.model_bytes == 15968098
    assert log.final.label == "quantized_ttt_phased" and log.eval_total_s == pytest.approx(500.1)


def test_two_logs_of_one_seed_say_whether_they_are_a_copy(repo, make, run_gate):
    sub = make()
    files = sub.files()
    log = files[f"{sub.folder}/train_seed42.log"]
    files[f"{sub.folder}/train.log"] = log
    at = log.rfind("val_bpb:") + len("val_bpb:")
    files[f"{sub.folder}/train_seed42_rerun.log"] = log[:at] + "2" + log[at + 1:]  # the last score: 1.x -> 2.x
    repo.pr(files=files)
    msgs = [m for m in logs_of(run_gate(repo)).messages if m.key == "dup-seed:42"]
    texts = sorted(m.text for m in msgs)
    assert len(msgs) == 2 and all(m.level == "warning" for m in msgs)
    assert any("the same reported score" in t and "a copy, counted once" in t for t in texts)
    assert any("two runs of one seed" in t for t in texts)
