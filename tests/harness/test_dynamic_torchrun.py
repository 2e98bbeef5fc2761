"""Submissions launched with torchrun: run end to end under torchrun (2 gloo ranks on the CPU), every rank traced
into its own ledger, the ledgers merged in the order the ranks' collectives fix, checked; plus the pieces (how the
launch is read from the README, the merge order, which concurrent prediction is the score)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import sandbox
from harness.derive import derive
from harness.dynamic import ScriptOptions, audit_script
from harness.launch import resolve, stated_nproc
from harness.ledger import LOOK, SCORE, SYNC, Ledger, LedgerWriter, Ranges, merge

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"
SPECS = json.loads((FIXTURES / "expected.json").read_text())
needs_sandbox = pytest.mark.skipif(not sandbox.available("bwrap"),
                                   reason=f"no sandbox here ({sandbox.BWRAP_APT})")


def _submission(tmp_path: Path, fixture: str, readme: str) -> Path:
    sub = tmp_path / fixture
    sub.mkdir()
    shutil.copyfile(FIXTURES / "pg_base.py", sub / "pg_base.py")
    shutil.copyfile(FIXTURES / f"{fixture}.py", sub / "train_gpt.py")
    (sub / "README.md").write_text(readme)
    return sub


@pytest.fixture(scope="module")
def cache(ref_data):
    return Path(ref_data[0]).parents[3]


@needs_sandbox
def test_a_sharded_legal_ttt_passes_everything_under_torchrun(cache, tmp_path):
    """README: torchrun --nproc_per_node=8; on the CPU: 2 gloo ranks, each scoring its share of every chunk."""
    sub = _submission(tmp_path, "legal_ddp_score_first_ttt",
                      "    torchrun --standalone --nproc_per_node=8 train_gpt.py\n")
    a = audit_script(ScriptOptions(path=sub, val_tokens=1024, iterations=6, cache_dir=cache, probes=True,
                                   keep=tmp_path / "kept"))
    d = a.result.to_dict()
    checks = {c["id"]: c for c in d["checks"]}
    assert d["verdict"]["conditions"] == SPECS["legal_ddp_score_first_ttt"]["verdict"], \
        [(c["id"], c["message"]) for c in d["checks"] + d["probes"]]
    assert d["verdict"]["overall"] == "PASS"
    assert "torchrun --nproc_per_node=2 (the README states --nproc_per_node=8, capped at" in \
        checks["run-completed"]["message"]
    assert checks["scored-count"]["verdict"] == checks["coverage"]["verdict"] == "PASS"
    assert d["ledger"]["positions"] == 1025 and d["reconstructed"]["val_loss"] == pytest.approx(
        d["reported"]["val_loss"], abs=1e-6)
    ranks = sorted((a.workdir / "collected-main" / ".scorefirst-trace").glob("rank*"))  # as the harness read it
    assert [r.name for r in ranks] == ["rank0", "rank1"]
    for r in ranks:  # each rank predicted part of the split and counted its collectives
        led = Ledger(r)
        assert led.count(LOOK) and led.count(SYNC) and led.complete
    led = Ledger(d["ledger"]["path"])
    scored_by = {int(led.events["rank"][i]) for i in np.flatnonzero(led.events["kind"] == SCORE)}
    assert scored_by == {0, 1}  # both ranks' predictions are scores in the merged ledger


@needs_sandbox
def test_a_sharded_last_epoch_scheme_fails_c3_and_c4_under_torchrun(cache, tmp_path):
    sub = _submission(tmp_path, "illegal_ddp_multi_epoch_last", "torchrun --nproc_per_node 8 train_gpt.py\n")
    a = audit_script(ScriptOptions(path=sub, val_tokens=1024, iterations=6, cache_dir=cache, probes=False))
    d = a.result.to_dict()
    assert d["verdict"]["conditions"] == SPECS["illegal_ddp_multi_epoch_last"]["verdict"]
    c = next(c for c in a.result.checks if c.id == "reported-from-trained-state")
    assert c.verdict == "FAIL" and "predicted again" in c.first_violation.detail
    assert a.result.reported["val_loss"] < a.result.reconstructed["val_loss"]


def test_the_launch_follows_the_readme_capped_by_the_machine(tmp_path):
    (tmp_path / "README.md").write_text("```\nTTT_ENABLED=1 torchrun --standalone --nproc_per_node=8 train_gpt.py\n```\n")
    assert stated_nproc(tmp_path) == 8
    cpu = resolve(tmp_path, None, gpu=False, gpus=0)
    assert (cpu.nproc, cpu.torchrun) == (2, True) and "--nproc_per_node=2" in " ".join(cpu.argv("train_gpt.py"))
    assert resolve(tmp_path, None, gpu=True, gpus=1).nproc == 1 and resolve(tmp_path, None, True, 1).torchrun
    assert resolve(tmp_path, None, gpu=True, gpus=4).nproc == 4
    forced = resolve(tmp_path, 1, gpu=False, gpus=0)
    assert (forced.nproc, forced.torchrun) == (1, False) and forced.argv("x.py")[1:] == ["x.py"]
    (tmp_path / "README.md").write_text("python3 train_gpt.py\n")
    assert stated_nproc(tmp_path) is None and not resolve(tmp_path, None, gpu=False, gpus=0).torchrun
    (tmp_path / "run.sh").write_text("torchrun --nproc-per-node gpu train_gpt.py\n")
    assert stated_nproc(tmp_path) == 8


def _rank(path, rank, events):
    """events: ("look", start, stop) | ("sync",) | ("report",)"""
    w = LedgerWriter(path, positions=300, rank=rank)
    for e in events:
        if e[0] == "sync":
            w.collective()
        elif e[0] == "look":
            w.look(Ranges([[e[1], e[2]]]), np.full(e[2] - e[1], float(rank)), 0)
        else:
            w.meta(event="report", val_loss=0.5, val_bpb=1.0, decimals=6, line="x val_loss:0.5 val_bpb:1.0")
    w.close()
    return path


def test_merged_ranks_follow_their_collectives_and_concurrent_windows_go_to_the_longest_context(tmp_path):
    """Rank 0 prints the report after the all-reduce that rank 1 entered after its last prediction; rank 1's
    windows start at 64 and 192 (longer context for 129..192 than rank 0's window starting at 128)."""
    r0 = _rank(tmp_path / "r0", 0, [("look", 1, 129), ("look", 129, 257), ("sync",), ("report",)])
    r1 = _rank(tmp_path / "r1", 1, [("look", 65, 193), ("look", 193, 300), ("sync",)])
    merge([r0, r1], tmp_path / "m")
    m = Ledger(tmp_path / "m")
    kinds = [int(k) for k in m.events["kind"]]
    report_at = next(i for i, mm in enumerate(m.metas) if mm.get("event") == "report")
    assert kinds.count(LOOK) == 4 and m.metas[report_at]["seq"] > max(
        int(s) for s, k in zip(m.events["seq"], kinds) if k == LOOK)
    d = derive(m, tmp_path / "d")
    led = Ledger(d.path)
    first_rank = np.full(300, -1)
    for i in np.flatnonzero(led.events["kind"] == SCORE):
        for a, b in led.event_ranges(i):
            first_rank[a:b] = led.events["rank"][i]
    assert (first_rank[1:129] == 0).all() and (first_rank[129:193] == 1).all()  # rank 1's window: more context
    assert (first_rank[193:257] == 0).all() and (first_rank[257:300] == 1).all()
