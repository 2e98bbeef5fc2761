"""`scorefirst gate --dynamic` (a GPU runner, or a CPU one for CPU-capable scripts): each folder's script is also
run sandboxed and traced, and the dynamic verdict and any static/dynamic disagreement reach the legality check.

The submission here is the synthetic pre-eval-TTT script of tests/fixtures/dynamic whose helper module cannot be
merged with it (illegal_pre_eval_ttt_unlinked.py), so the static audit can only warn; only the dynamic audit proves
the train-then-score. With a helper that links, the static audit already fails it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
from harness import sandbox  # noqa: E402

DYNAMIC = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sandbox.available("bwrap"),
                       reason=f"bubblewrap not installed ({sandbox.BWRAP_APT})"),
]


def test_gate_dynamic_blocks_what_only_a_run_proves(repo, make, gate_cli, tmp_path, monkeypatch):
    sub = make(script=(DYNAMIC / "illegal_pre_eval_ttt_unlinked.py").read_text())
    repo.pr(sub, files={f"{sub.folder}/pg_base.py": (DYNAMIC / "pg_base.py").read_text()})
    out = tmp_path / "gate.json"
    args = ("--repo", repo.path, "--base", "main", "--head", "pr")
    static = gate_cli(*args, "--json", out)
    # statically only a "cannot verify" warning: the evaluation lives in pg_base.py, not linked (SF-IMPORT-001)
    assert json.loads(out.read_text())["folders"][0]["checks"]["legality"]["status"] == "WARN", static.out

    # the embedded corpus and tokenizer the dynamic audit builds are cached here
    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", os.environ.get("SCOREFIRST_TEST_CACHE") or str(tmp_path / "corpus"))
    run = gate_cli(*args, "--dynamic", "--val-tokens", "1024", "--iterations", "4", "--no-probes", "--json", out)
    assert run.code == 1, run.err
    (folder,) = json.loads(out.read_text())["folders"]
    legality = folder["checks"]["legality"]
    assert legality["status"] == "FAIL"
    texts = [m["text"] for m in legality["messages"]]
    assert any(t.startswith("dynamic audit C3") and "score-before-update" in t for t in texts), texts
    assert any("static and dynamic audits disagree on C3: static WARN, dynamic FAIL" in t for t in texts), texts
    assert legality["data"]["dynamic"] == "FAIL"
    assert folder["audit"]["dynamic"]["verdict"]["conditions"]["C3"] == "FAIL"
