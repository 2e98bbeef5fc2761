"""benchmarks/gpu_trace_check.py, run as the lead runs it on a GPU machine (a plain script from the repository root,
nothing installed), here on the CPU with one fixture: the verdicts match, and the JSON says on what it ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (sandbox.available("bwrap") or sandbox.available("unshare")), reason="no sandbox here")
def test_the_gpu_check_runs_on_the_cpu_and_reports_device_tolerance_and_isolation(ref_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_trace_check.py", "--out", str(tmp_path), "--cache",
                           str(Path(ref_data[0]).parents[3]), "--fixtures", "legal_numpy_ngram_tilt"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1/1 fixtures as expected" in proc.stdout
    report = json.loads((tmp_path / "gpu_trace_check.json").read_text())
    (row,) = report["fixtures"]
    assert report["all_match"] and row["match"] and row["device"] == "cpu" and row["probe_tolerance"] is None
    assert row["got"] == {"C1": None, "C2": "WARN", "C3": "PASS", "C4": "WARN"}
    assert row["isolation"].split(":")[0] in ("bubblewrap", "unshare") and "python" in row["launch"]
    assert report["machine"]["gpus"] == 0
