"""The gate on real record folders the maintainers merged (and on PRs they ruled illegal), from ../shared/corpus.

Each case's folder is committed to a fresh repository in tmp_path as a PR against a base that has only a README,
the way the gate meets it in CI. The log grammar must read each era's logs (the figures are pinned to what the
logs print), the maintainers' practice must not block (code counted as the run counted it, a launch-era
submission.json), and what a ruling says a maintainer blocks must still block. The static audit's own verdict
(legality) is not asserted here: it has its own tests. Skipped when ../shared/corpus is absent.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.gate.model import Status
from harness.gate.runner import GateOptions, run_gate

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not (CORPUS / "manifest.tsv").is_file(), reason="../shared/corpus is not present")
GATE_CHECKS = ("format", "logs", "budgets", "significance")


def gate_case(case: str, tmp_path: Path, cache) -> object:
    repo = tmp_path / case
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
                       check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "README.md").write_text("# Parameter Golf\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "pr")
    shutil.copytree(CORPUS / case / "records", repo / "records")
    git("add", "-A")
    git("commit", "-qm", "record")
    result = run_gate(GateOptions(repo=repo, base="main", head="pr", jobs=1, cache_dir=cache))
    assert result.error is None
    (folder,) = result.folders
    return folder


def seeds(folder) -> dict:
    return {row["seed"]: row for row in folder.seeds}


def test_launch_era_record_passes_its_gate_checks(tmp_path, gate_cache):
    """2026-03-18, official grammar; three seeds; submission.json states seed 1337's score, not the mean."""
    f = gate_case("main-27018d95", tmp_path, gate_cache)
    assert {n: f.checks[n].status for n in GATE_CHECKS} == {
        "format": Status.PASS, "logs": Status.WARN, "budgets": Status.PASS, "significance": Status.PASS}
    claims = {m.key: m for m in f.checks["logs"].messages}
    assert claims["agree:val_bpb"].level == "warning"
    assert "it is seed 1337's `final_int8_zlib_roundtrip` stage" in claims["agree:val_bpb"].text


def test_later_grammar_is_read(tmp_path, gate_cache):
    """2026-04-01: `N/M train_loss: …` steps with train_time in minutes, a spaced stopping line, `key: value`."""
    f = gate_case("main-9983b211", tmp_path, gate_cache)
    s = seeds(f)
    assert (s[1337]["steps"], s[1337]["train_s"], s[1337]["stage"]) == (5962, 590.009, "final_int6_sliding_window")
    assert s[1337]["val_bpb"] == pytest.approx(1.09794973) and s[1337]["eval_s"] == pytest.approx(71.942)
    assert [f.checks[n].status for n in ("format", "budgets")] == [Status.PASS, Status.PASS]
    # the logs count 40 bytes more code than the submitted file: a person looks, it does not block (#86)
    sizes = [m for m in f.checks["logs"].messages if m.key == "code-size"]
    assert {m.level for m in sizes} == {"warning"} and "68,246 bytes but the submitted train_gpt.py is 68,206" \
        in sizes[0].text


def test_compressed_code_and_phased_ttt(tmp_path, gate_cache):
    """2026-04-14: the run counts its code compressed (27,610 bytes; the file is 122,168); TTT per-chunk lines
    are a running total inside the timed phased-TTT stage, not phases to add."""
    f = gate_case("1626", tmp_path, gate_cache)
    s = seeds(f)
    assert (s[0]["code_bytes"], s[0]["artifact_bytes"]) == (27_610, 15_939_841)
    assert s[0]["stage"] == "quantized_ttt_phased" and s[0]["eval_s"] == pytest.approx(332.1)
    assert s[0]["train_s"] == pytest.approx(596.103)
    assert [f.checks[n].status for n in ("logs", "budgets", "significance")] == [Status.PASS] * 3
    (note,) = [m for m in f.checks["budgets"].messages if m.key == "code-counted"]
    assert note.level == "note" and "train_gpt.py as submitted is 122,168 bytes" in note.text


def test_record_over_the_size_limit_by_its_own_log_still_blocks(tmp_path, gate_cache):
    """Merged, yet its logs count 80,055 code + 15,978,439 model = 16,058,494 bytes: over the decimal limit, which
    cocohearts ruled invalid on #1959 (15,976,086 + 66,546 = 16,042,632)."""
    f = gate_case("main-867015e0", tmp_path, gate_cache)
    b = f.checks["budgets"]
    over = {m.path.rsplit("/", 1)[1]: m for m in b.messages if m.key == "size"}
    assert b.status is Status.FAIL and "train_seed42.log" in over
    m = over["train_seed42.log"]
    assert m.line == 166 and "artifact 16,058,494 bytes (code 80,055 + compressed model 15,978,439)" in m.text


@pytest.mark.parametrize("case, line, off", [("1184", 2505, "+21.00%"), ("2071", 4119, "+8.95%")])
def test_ruled_illegal_byte_denominators_still_block(tmp_path, gate_cache, case, line, off):
    """#1184 (byte-fallback tokens counted as 3 bytes) and #2071 (CaseOps data scored with the plain byte LUT):
    the logs' own numbers imply a BPB denominator far from the validation split's bytes (PG-BPB-001)."""
    f = gate_case(case, tmp_path, gate_cache)
    logs = f.checks["logs"]
    (m,) = [m for m in logs.messages if m.key == "denominator" and m.path.endswith("train_seed1337.log")]
    assert logs.status is Status.FAIL and m.level == "error" and m.line == line and off in m.text


def test_ruled_illegal_single_seed_still_blocks(tmp_path, gate_cache):
    """#2139 was ruled out with one seed (single-seed rows are rejected, #1963/#2020)."""
    f = gate_case("2139", tmp_path, gate_cache)
    sig = f.checks["significance"]
    assert sig.status is Status.FAIL and "1 run with a reported score" in sig.messages[0].text
