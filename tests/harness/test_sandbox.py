"""Hostile scripts in the sandbox: each one is contained and reported, and the host is left as it was."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from harness import sandbox

needs_bwrap = pytest.mark.skipif(not sandbox.available("bwrap"), reason="bubblewrap not installed "
                                 f"({sandbox.BWRAP_APT})")


def _run(tmp_path, code, isolation="bwrap", **limits):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "hostile.py").write_text(textwrap.dedent(code))
    lim = sandbox.Limits(**{"cpu_seconds": 20, "wall_seconds": 30, "memory_mb": 1024, "processes": 64, **limits})
    return sandbox.run([sys.executable, "hostile.py"], work, limits=lim, isolation=isolation)


def _alive_with(marker: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


@needs_bwrap
def test_network_attempts_are_blocked_and_reported(tmp_path):
    res = _run(tmp_path, """
        import socket
        for host in [("1.1.1.1", 80), ("huggingface.co", 443)]:
            try:
                socket.create_connection(host, timeout=3).close()
                print("CONNECTED", host)
            except OSError as e:
                print("blocked", e.errno)
    """)
    assert res.exit_code == 0 and "CONNECTED" not in res.stdout
    assert res.network_attempts == ["connect 1.1.1.1:80", "resolve huggingface.co:443"]
    assert res.network.startswith("none") and res.isolation.startswith("bubblewrap")
    info = res.info().to_dict()
    assert info["network_attempts"] == res.network_attempts and info["limits"]["memory_mb"] == 1024


@needs_bwrap
def test_loopback_is_not_a_network_attempt(tmp_path):
    res = _run(tmp_path, """
        import socket
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print("port", s.getsockname()[1])
    """)
    assert res.exit_code == 0 and res.network_attempts == []


@needs_bwrap
def test_writes_outside_the_workdir_fail_and_are_reported(tmp_path):
    """Nothing of the host is writable: the few host paths in the sandbox are read-only, the rest do not exist
    there; the work directory is the one writable place."""
    repo_file = Path("/var/tmp") / f"scorefirst-escape-{uuid.uuid4().hex}"
    home = Path.home() / f".scorefirst-escape-{uuid.uuid4().hex}"
    usr = Path("/usr") / f"scorefirst-escape-{uuid.uuid4().hex}"
    in_tmp = tmp_path / f"escaped-{uuid.uuid4().hex}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "hostile.py").write_text(textwrap.dedent(f"""
        for path in [{str(repo_file)!r}, {str(home)!r}, {str(usr)!r}, "/etc/scorefirst-escape", {str(in_tmp)!r}]:
            try:
                open(path, "w").write("x")
                print("WROTE", path)
            except OSError as e:
                print("refused", path, e.errno)
        open("inside.txt", "w").write("fine")
    """))
    res = sandbox.run([sys.executable, "hostile.py"], work, limits=sandbox.Limits(cpu_seconds=20, wall_seconds=30),
                      collect=["inside.txt"], collect_to=tmp_path / "out")
    assert res.exit_code == 0, res.tail()
    for p in (repo_file, home, usr, Path("/etc/scorefirst-escape")):
        assert f"refused {p} " in res.stdout and str(p) in res.write_attempts and not p.exists()
    assert f"refused {in_tmp} " in res.stdout and not in_tmp.exists()  # /tmp in there is the sandbox's own
    assert "WROTE" not in res.stdout
    assert res.collected["inside.txt"].read_text() == "fine"


@needs_bwrap
@pytest.mark.skipif(not sandbox.process_limit_available(), reason="root without a pids cgroup: a fork bomb could not "
                    "be capped here, so it is not run")
def test_fork_bomb_is_capped_and_reaped(tmp_path):
    marker = f"forkbomb-{uuid.uuid4().hex}"
    res = _run(tmp_path, f"""
        import os, sys, time
        sys.argv.append({marker!r})
        n = 0
        while True:
            try:
                if os.fork() == 0:
                    n = 0
                n += 1
            except OSError:
                time.sleep(0.01)
    """, wall_seconds=5, processes=32)
    assert res.killed is not None and ("wall-time" in res.killed or "process" in res.killed)
    assert any(e.startswith(("pids cgroup", "RLIMIT_NPROC")) for e in res.enforced)
    assert _alive_with(marker) == []


@needs_bwrap
def test_memory_bomb_is_contained(tmp_path):
    res = _run(tmp_path, """
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
    """, memory_mb=512)
    assert res.exit_code != 0 and res.killed == "memory limit (512 MB)"


@needs_bwrap
def test_infinite_loop_hits_the_cpu_or_wall_limit(tmp_path):
    res = _run(tmp_path, """
        while True:
            pass
    """, cpu_seconds=2, wall_seconds=8)
    assert res.killed is not None and res.wall_seconds < 8.5
    assert "CPU-time" in res.killed or "wall-time" in res.killed


@needs_bwrap
def test_sleeping_script_hits_the_wall_limit_and_children_die(tmp_path):
    marker = f"sleeper-{uuid.uuid4().hex}"
    res = _run(tmp_path, f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", {marker!r}], start_new_session=True)
        time.sleep(60)
    """, wall_seconds=2)
    assert res.killed == "wall-time limit (2 s)" and res.wall_seconds < 5
    assert _alive_with(marker) == []


@pytest.mark.skipif(not sandbox.available("unshare"), reason="unshare -n not permitted here")
def test_unshare_fallback_isolates_the_network_and_says_what_it_does_not(tmp_path):
    res = _run(tmp_path, """
        import socket
        try:
            socket.create_connection(("1.1.1.1", 80), timeout=3); print("CONNECTED")
        except OSError as e:
            print("blocked", e.errno)
    """, isolation="unshare")
    assert "CONNECTED" not in res.stdout and "connect 1.1.1.1:80" in res.network_attempts
    assert "NOT isolated" in res.isolation and res.network.startswith("none")


def test_unknown_or_missing_isolation_is_refused(monkeypatch):
    with pytest.raises(ValueError):
        sandbox.pick_isolation("docker")
    monkeypatch.setattr(sandbox, "available", lambda kind: kind == "none")
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
        sandbox.pick_isolation("auto")
    assert sandbox.pick_isolation("none") == "none"


def test_no_isolation_says_so(tmp_path):
    res = _run(tmp_path, "print('hello')", isolation="none")
    assert res.exit_code == 0 and res.stdout.strip() == "hello"
    assert "NOT isolated" in res.isolation and "NOT isolated" in res.network


TAMPER = """
    import os, socket
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=3)
    except OSError:
        pass
    log = os.environ["SCOREFIRST_GUARD_LOG"]
    for what, attempt in [("truncate", lambda: os.truncate(log, 0)), ("overwrite", lambda: open(log, "w").write("{}\\n")),
                          ("unlink", lambda: os.unlink(log))]:
        try:
            attempt()
            print(what, "done")
        except OSError as e:
            print(what, "refused", e.errno)
"""


@pytest.mark.parametrize("isolation", ["bwrap", "unshare"])
def test_a_script_cannot_erase_the_guards_record_and_tampering_shows(tmp_path, isolation):
    """The guard reports through a FIFO the harness drains: truncating it fails, an overwrite only adds a line the
    guard did not write (reported), unlinking it (possible without bubblewrap) takes nothing back."""
    if not sandbox.available(isolation):
        pytest.skip(f"{isolation} not available here")
    res = _run(tmp_path, TAMPER, isolation=isolation)
    assert res.exit_code == 0, res.tail()
    assert "truncate refused 22" in res.stdout and "overwrite done" in res.stdout
    assert res.network_attempts == ["connect 1.1.1.1:80"] and res.guarded == 1
    assert res.guard_problems == ["1 line(s) in the guard's channel that the guard did not write (the script wrote "
                                  "into it)"]
    assert ("unlink refused 30" if isolation == "bwrap" else "unlink done") in res.stdout
    assert not (tmp_path / "work" / ".scorefirst-guard.jsonl").exists()


def test_records_that_never_arrived_are_counted_per_process():
    from harness.guard_channel import parse

    lines = [{"kind": "start", "pid": 7, "n": 0}, {"kind": "network", "what": "connect 1.1.1.1:80", "pid": 7, "n": 1},
             {"kind": "write", "what": "/etc/x", "pid": 7, "n": 3}, {"kind": "start", "pid": 8, "n": 0},
             {"kind": "start", "pid": 7, "n": 0}, {"kind": "network", "what": "resolve a.b:443", "pid": 7, "n": 1}]
    rec = parse("".join(json.dumps(x) + "\n" for x in lines).encode())
    assert rec.processes == 3 and rec.network == ["connect 1.1.1.1:80", "resolve a.b:443"] and rec.writes == ["/etc/x"]
    assert rec.problems == ["1 record(s) of process 7 never arrived (read away from the channel)"]
