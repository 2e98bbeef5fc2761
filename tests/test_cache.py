"""The content-hash cache skips unchanged files (asserted by counters, never by timing) and never changes a result."""
from __future__ import annotations

import json

import pytest

import audits.engine
from audits.api import audit_paths, tool_version
from audits.cache import Cache, EnvReads
from audits.runenv import parse_env_args


@pytest.fixture
def engine_calls(monkeypatch):
    """Count calls into the analyzer (jobs=1 keeps them in this process)."""
    calls = []
    real = audits.engine.audit_source

    def counting(src, env):
        calls.append(src.path)
        return real(src, env)

    monkeypatch.setattr(audits.engine, "audit_source", counting)
    return calls


@pytest.fixture
def folder(write, samples):
    for i in range(3):
        write(f"c/s{i}/train_gpt.py", samples.illegal + f"\nrun_id = {i}\n")
    write("c/clean.py", samples.clean)
    return write("c/README.md", "x").parent


def test_second_run_hits_the_cache(folder, tmp_path, engine_calls):
    cache1 = Cache(tmp_path / "cache", tool_version())
    first = audit_paths([folder], jobs=1, cache_dir=cache1)
    assert (cache1.hits, cache1.misses, cache1.writes) == (0, 4, 4)
    assert len(engine_calls) == 4
    cache2 = Cache(tmp_path / "cache", tool_version())
    second = audit_paths([folder], jobs=1, cache_dir=cache2)
    assert (cache2.hits, cache2.misses, cache2.writes) == (4, 0, 0)
    assert len(engine_calls) == 4  # nothing re-analyzed
    assert second.to_dict() == first.to_dict()
    assert second.to_dict(with_source=True) == first.to_dict(with_source=True)  # excerpts still work from cache


def test_changed_file_and_changed_env_miss(folder, tmp_path, engine_calls):
    c = lambda: Cache(tmp_path / "cache", tool_version())  # noqa: E731
    audit_paths([folder], jobs=1, cache_dir=c())
    (folder / "clean.py").write_text((folder / "clean.py").read_text() + "\nprint(2)\n")
    again = c()
    audit_paths([folder], jobs=1, cache_dir=again)
    assert (again.hits, again.misses) == (3, 1)
    other_env = c()
    res = audit_paths([folder], parse_env_args(["TTT_ENABLED=0"]), jobs=1, cache_dir=other_env)
    # the three scripts read TTT_ENABLED: re-analyzed; clean.py never reads it: its result still holds
    assert (other_env.hits, other_env.misses) == (1, 3)
    assert res.conditions["C3"].value == "PASS"  # the cached TTT_ENABLED=1 results were not reused
    fresh = audit_paths([folder], parse_env_args(["TTT_ENABLED=0"]), jobs=1, cache_dir=None)
    assert res.to_dict() == fresh.to_dict()


def test_env_keys_a_script_never_reads_do_not_miss(write, samples, tmp_path, engine_calls):
    """A fork that only changes its README's run command in keys the script does not read is a hit, and says
    what analyzing it would say; a key the script does read is a miss."""
    a = write("runs/a/train_gpt.py", samples.illegal)
    write("runs/a/README.md", "```\nSEED=1 torchrun train_gpt.py\n```\n")
    b = write("runs/b/train_gpt.py", samples.illegal)
    write("runs/b/README.md", "```\nSEED=2 NUM_LAYERS=11 torchrun train_gpt.py\n```\n")
    cache = Cache(tmp_path / "cache", tool_version())
    audit_paths([a.parent], jobs=1, cache_dir=cache)
    copy = audit_paths([b.parent], jobs=1, cache_dir=cache)
    assert engine_calls == [a.as_posix()] and cache.hits == 1
    assert {(e.key, e.value) for e in copy.env} == {("SEED", "2"), ("NUM_LAYERS", "11")}
    fresh = audit_paths([b.parent], jobs=1, cache_dir=None)
    assert [f.to_dict() for f in copy.findings] == [f.to_dict() for f in fresh.findings]
    write("runs/c/train_gpt.py", samples.illegal)
    c = write("runs/c/README.md", "```\nTTT_ENABLED=0 torchrun train_gpt.py\n```\n")
    off = audit_paths([c.parent], jobs=1, cache_dir=cache)
    assert engine_calls[-1] == c.parent.joinpath("train_gpt.py").as_posix() and cache.misses == 2
    assert off.conditions["C3"].value == "PASS"


def test_an_audit_that_looks_at_the_whole_environment_keys_on_all_of_it():
    reads = EnvReads({"A": {"1"}, "B": {"2"}})
    assert reads.get("A") == {"1"} and "C" not in reads
    assert reads.keys_read == ["A", "C"]
    assert dict(reads) == {"A": {"1"}, "B": {"2"}}
    assert reads.keys_read is None


def test_tool_version_is_part_of_the_key(folder, tmp_path):
    audit_paths([folder], jobs=1, cache_dir=Cache(tmp_path / "cache", tool_version()))
    other = Cache(tmp_path / "cache", "999.0")
    audit_paths([folder], jobs=1, cache_dir=other)
    assert other.hits == 0


def test_corrupt_entry_is_a_miss(folder, tmp_path, engine_calls):
    audit_paths([folder], jobs=1, cache_dir=Cache(tmp_path / "cache", tool_version()))
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 4
    entries[0].write_text("{not json")
    again = Cache(tmp_path / "cache", tool_version())
    res = audit_paths([folder], jobs=1, cache_dir=again)
    assert (again.hits, again.misses, again.writes) == (3, 1, 1)
    assert len(res.files) == 4 and not res.errors


def test_unwritable_cache_still_audits(folder, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cache = Cache(blocker / "cache", tool_version())
    res = audit_paths([folder], jobs=1, cache_dir=cache)
    assert len(res.files) == 4 and not res.errors and cache.writes == 0


def test_cli_uses_env_cache_dir_and_no_cache(cli, folder, cache_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r1 = cli("audit", folder, "--format", "json")
    entries = list(cache_env.rglob("*.json"))
    assert len(entries) == 4 and (cache_env / "CACHEDIR.TAG").is_file()
    r2 = cli("audit", folder, "--format", "json")
    assert json.loads(r1.out) == json.loads(r2.out)
    monkeypatch.setenv("SCOREFIRST_CACHE_DIR", str(tmp_path / "other-cache"))
    cli("audit", folder, "--no-cache")
    assert not (tmp_path / "other-cache").exists() and not (tmp_path / ".scorefirst-cache").exists()


def test_parallel_equals_serial(write, samples, monkeypatch):
    import audits.api

    pools = []

    class CountingPool(audits.api.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            pools.append(k.get("max_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(audits.api, "ProcessPoolExecutor", CountingPool)
    d = None
    for i in range(6):
        d = write(f"par/s{i}.py", samples.illegal if i % 2 else samples.clean).parent
    serial = audit_paths([d], jobs=1)
    assert pools == []
    parallel = audit_paths([d], jobs=2)
    assert pools == [2]  # both cores, for a folder of >= 4 files
    assert parallel.to_dict() == serial.to_dict()
    assert [f.path.rsplit("/", 1)[-1] for f in parallel.files] == [f"s{i}.py" for i in range(6)]


def test_a_crashing_worker_costs_only_its_file(write, samples, monkeypatch):
    """A native crash (simulated by os._exit in the worker) breaks the pool; the other files are redone."""
    import os

    real = audits.engine.audit_source

    def crashing(src, env):
        if src.path.endswith("s2.py"):
            os._exit(70)
        return real(src, env)

    monkeypatch.setattr(audits.engine, "audit_source", crashing)  # inherited by the forked workers
    d = None
    for i in range(5):
        d = write(f"crash/s{i}.py", samples.illegal).parent
    res = audit_paths([d], jobs=2)
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in res.files}
    assert by_name["s2.py"].error_kind == "internal"
    assert by_name["s2.py"].error.endswith("s2.py: the analyzer process crashed on this file")
    assert all(by_name[f"s{i}.py"].error is None and by_name[f"s{i}.py"].findings for i in (0, 1, 3, 4))


def test_a_copy_in_another_folder_is_a_hit_reported_under_its_own_path(write, samples, tmp_path, engine_calls):
    a = write("forks/a/train_gpt.py", samples.illegal)
    b = write("forks/b/train_gpt.py", samples.illegal)
    cache = Cache(tmp_path / "cache", tool_version())
    first = audit_paths([a.parent], jobs=1, cache_dir=cache)
    copy = audit_paths([b.parent], jobs=1, cache_dir=cache)
    assert engine_calls == [f"{a.parent.as_posix()}/train_gpt.py"]  # the copy was not analyzed again
    fresh = audit_paths([b.parent], jobs=1, cache_dir=None)  # what analyzing it would have said
    assert [f.to_dict() for f in copy.findings] == [f.to_dict() for f in fresh.findings]
    assert {f.path for f in copy.findings} == {f"{b.parent.as_posix()}/train_gpt.py"}
    assert {f.fingerprint for f in copy.findings}.isdisjoint(f.fingerprint for f in first.findings)
