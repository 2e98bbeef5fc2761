"""Hostile submissions: each attack is contained and every verdict stays honest (no PASS for a disturbed run, no host
byte in any output, no hang, nothing left behind). The classes contained before (network, DNS, writes outside the
work directory, fork and memory bombs, busy loops, sleepers, guard tampering) are in test_sandbox.py; this file adds
the attacks that used to get through (tests/fixtures/hostile/README.md lists the scripts)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from audits.results import AuditResult
from harness import sandbox
from harness.dynamic import ScriptOptions, audit_script, format_terminal

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
PG_BASE = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic" / "pg_base.py"
REPO = Path(__file__).resolve().parents[2]

needs_bwrap = pytest.mark.skipif(not sandbox.available("bwrap"),
                                 reason=f"bubblewrap not installed ({sandbox.BWRAP_APT})")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop and the work-dir tmpfs are what root gets")


def _run(tmp_path, code, collect=(), **limits):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "hostile.py").write_text(textwrap.dedent(code))
    lim = sandbox.Limits(**{"cpu_seconds": 20, "wall_seconds": 30, "memory_mb": 1024, "processes": 64, **limits})
    return sandbox.run([sys.executable, "hostile.py"], work, limits=lim, collect=collect,
                       collect_to=tmp_path / "collected" if collect else None)


# --- the host is out of reach -----------------------------------------------------------------------------------------


@needs_bwrap
def test_host_unix_sockets_cannot_be_reached_and_the_attempt_is_evidence(tmp_path):
    """A daemon's socket on the host (path and abstract): nothing to connect to in there; the path connect is a
    network attempt (a PG-NET finding in the audit)."""
    path = Path("/var/tmp") / f"scorefirst-test-{uuid.uuid4().hex[:8]}.sock"  # /tmp in there is the sandbox's own
    abstract = f"\0scorefirst-test-{uuid.uuid4().hex}"
    servers = []
    for addr in (str(path), abstract):
        s = socket.socket(socket.AF_UNIX)
        s.bind(addr)
        s.listen()
        servers.append(s)
    try:
        res = _run(tmp_path, f"""
            import socket
            for addr in [{str(path)!r}, {abstract!r}, "/run/docker.sock", "/var/run/dbus/system_bus_socket"]:
                try:
                    socket.socket(socket.AF_UNIX).connect(addr)
                    print("CONNECTED", repr(addr))
                except OSError as e:
                    print("refused", e.errno)
        """)
    finally:
        for s in servers:
            s.close()
        path.unlink(missing_ok=True)
    assert res.exit_code == 0, res.tail()
    assert "CONNECTED" not in res.stdout and res.stdout.count("refused") == 4
    assert f"connect unix:{path}" in res.network_attempts and "connect unix:/run/docker.sock" in res.network_attempts
    assert not any("scorefirst-test-" in a and "unix:/var" not in a for a in res.network_attempts)  # abstract: private


@needs_bwrap
def test_host_files_are_not_there(tmp_path):
    secret = tmp_path / "secret.txt"
    marker = f"HOST-SECRET-{uuid.uuid4().hex}"
    secret.write_text(marker)
    secret.chmod(0o644)
    res = _run(tmp_path, f"""
        import os
        for path in ["/etc/shadow", "/etc/ssh", {str(secret)!r}, os.path.expanduser("~root") + "/.bash_history",
                     "/var/log", "/home", "/run"]:
            try:
                print("READ", path, open(path).read()[:200] if os.path.isfile(path) else os.listdir(path))
            except OSError as e:
                print("absent", path, e.errno)
        print("etc", sorted(os.listdir("/etc")))
    """)
    assert res.exit_code == 0, res.tail()
    assert "READ" not in res.stdout and marker not in res.stdout
    etc = json.loads(res.stdout.split("etc ", 1)[1].replace("'", '"'))
    assert "shadow" not in etc and "passwd" in etc and "hosts" in etc


@needs_bwrap
@as_root
def test_the_script_runs_as_an_unprivileged_uid_without_capabilities(tmp_path):
    res = _run(tmp_path, """
        import os
        caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith(("CapEff", "CapPrm"))]
        print(os.getuid(), os.getgid(), os.getgroups(), caps)
        try:
            os.setuid(0)
            print("ROOT AGAIN")
        except OSError as e:
            print("setuid refused", e.errno)
    """)
    assert res.stdout.split("\n")[0] == f"{sandbox.SANDBOX_UID} {sandbox.SANDBOX_GID} [] " \
                                        "['0000000000000000', '0000000000000000']"
    assert "setuid refused 1" in res.stdout and "ROOT AGAIN" not in res.stdout


@needs_bwrap
def test_signals_cannot_reach_the_harness_or_host_processes(tmp_path):
    """The script sees its own pid namespace only: its parent is the sandbox's init, kill(-1) reaches only itself,
    and a host process's pid names nothing in there."""
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = _run(tmp_path, f"""
            import os, signal
            for pid in (os.getppid(), 1, {host.pid}):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print("sent", pid)
                except OSError as e:
                    print("refused", pid, e.errno)
            os.kill(-1, signal.SIGKILL)
        """)
        assert host.poll() is None  # the host process survived
        assert res.exit_code != 0 and "sent" not in res.stdout.replace(f"sent {host.pid}", "")
    finally:
        host.kill()
        host.wait()


@needs_bwrap
def test_a_daemon_that_detaches_dies_with_the_run(tmp_path):
    marker = f"daemon-{uuid.uuid4().hex}"
    res = _run(tmp_path, f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", {marker!r}])
            os._exit(0)
        time.sleep(0.5)
    """)
    assert res.exit_code == 0
    time.sleep(0.2)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]


def _cmdline_has(p: Path, marker: str) -> bool:
    try:
        return marker.encode() in (p / "cmdline").read_bytes()
    except OSError:
        return False


# --- what the run leaves in the work directory is hostile input -------------------------------------------------------


@needs_bwrap
def test_planted_symlinks_fifos_and_devices_are_refused_not_followed(tmp_path):
    secret = tmp_path / "host.txt"
    marker = f"HOST-BYTES-{uuid.uuid4().hex}"
    secret.write_text(marker)
    t0 = time.monotonic()
    res = _run(tmp_path, f"""
        import os
        os.makedirs("out/inner")
        open("out/ok.txt", "w").write("fine")
        os.symlink({str(secret)!r}, "out/host")
        os.symlink("/dev/zero", "out/zero")
        os.mkfifo("out/inner/pipe")
        os.mkfifo("whole.fifo")
        for name in (".scorefirst-stdout", ".scorefirst-stderr"):
            os.symlink({str(secret)!r}, name)
    """, collect=["out", "whole.fifo", "absent"])
    assert time.monotonic() - t0 < 25  # no wait on a FIFO, no read of /dev/zero
    assert res.exit_code == 0, res.tail()
    assert (res.collected["out"] / "ok.txt").read_text() == "fine"
    assert sorted(res.collect_problems) == ["out/host: refused (a symbolic link)",
                                            "out/inner/pipe: refused (a FIFO)",
                                            "out/zero: refused (a symbolic link)",
                                            "whole.fifo: refused (a FIFO)"]
    assert "absent" not in res.collected
    assert marker not in res.stdout + res.stderr
    assert not any(p.is_symlink() for p in (tmp_path / "collected").rglob("*"))


@needs_bwrap
def test_output_floods_are_capped(tmp_path):
    res = _run(tmp_path, """
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(40):
            sys.stdout.write(chunk)
        print("END")
    """)
    assert res.exit_code == 0
    assert len(res.stdout) < sandbox.OUTPUT_CAP + 200 and res.stdout.rstrip().endswith("END")
    assert "earlier bytes not kept" in res.stdout


@needs_bwrap
@as_root
def test_a_disk_bomb_fills_only_its_own_size_limited_work_dir(tmp_path):
    res = _run(tmp_path, """
        import os
        chunk = b"x" * (1 << 20)
        with open("bomb.bin", "wb") as f:
            for _ in range(200):
                f.write(chunk)
                f.flush()
    """, disk_mb=32)
    assert res.exit_code != 0 and res.killed == "disk limit (32 MB)", res.tail()
    assert "work directory: tmpfs of 32 MB" in res.enforced
    assert not (tmp_path / "work" / "bomb.bin").exists()  # the tmpfs is gone with the run


# --- nothing is left behind -------------------------------------------------------------------------------------------


@needs_bwrap
def test_a_second_run_cleans_up_after_a_harness_killed_with_sigkill(tmp_path):
    """kill -9 of the auditor mid-run leaves its cgroups, guard folder and work-dir mount; the next run removes them
    (and the sandboxed processes died with their parent)."""
    marker = f"orphan-{uuid.uuid4().hex}"
    work = tmp_path / "work"
    work.mkdir()
    driver = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from harness import sandbox
        print("started", flush=True)
        sandbox.run([sys.executable, "-c", "import time; time.sleep(120)", {marker!r}], Path({str(work)!r}),
                    limits=sandbox.Limits(wall_seconds=120, cpu_seconds=120, memory_mb=1024))
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _owned_by(proc.pid):
            time.sleep(0.1)
        left = _owned_by(proc.pid)
        assert left, "the run never started"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(0.5)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]
    removed = sandbox.reap_stale()
    assert _owned_by(proc.pid) == [] and removed
    res = _run(tmp_path, "print('second run')")
    assert res.exit_code == 0 and res.stdout.strip() == "second run"


def _owned_by(pid: int) -> list[str]:
    """Leftovers named for a harness pid: temp folders, cgroups, mounts."""
    tag = f"-{pid}-"
    out = [str(p) for p in Path("/tmp").iterdir() if p.name.startswith("scorefirst-") and tag in p.name]
    cg = Path("/sys/fs/cgroup")
    for base in [cg, *(p for p in cg.iterdir() if p.is_dir())] if cg.is_dir() else []:
        try:
            out += [str(d) for d in base.iterdir() if d.name.startswith(f"scorefirst-{pid}-")]
        except OSError:
            pass
    out += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f"scorefirst-work-{pid}-" in line]
    return out


# --- weaker sandboxes only by name ------------------------------------------------------------------------------------


def test_auto_never_falls_back_to_a_network_only_sandbox(monkeypatch):
    monkeypatch.setattr(sandbox, "available", lambda kind: kind in ("unshare", "none"))
    with pytest.raises(sandbox.SandboxUnavailable) as e:
        sandbox.pick_isolation("auto")
    assert "--sandbox unshare" in str(e.value) and "NOT isolated" in str(e.value)
    assert sandbox.pick_isolation("unshare") == "unshare"


# --- a disturbed run is never a PASS (the tracer's tamper evidence) ---------------------------------------------------


@pytest.fixture(scope="module")
def cache(ref_data):
    return Path(ref_data[0]).parents[3]


def _audit_hostile(name: str, cache: Path, tmp_path: Path):
    sub = tmp_path / name
    sub.mkdir()
    shutil.copy(PG_BASE, sub / "pg_base.py")
    shutil.copy(HOSTILE / f"{name}.py", sub / "train_gpt.py")
    limits = sandbox.Limits(cpu_seconds=240, wall_seconds=240, memory_mb=4096, disk_mb=256)
    return audit_script(ScriptOptions(path=sub, val_tokens=512, iterations=2, cache_dir=cache, probes=False, nproc=1,
                                      limits=limits))


TAMPERED = {
    "tracer_disable_torch_function": "torch-function modes are disabled",
    "tracer_mode_popped": "torch-function modes are disabled",
    "tracer_method_replaced": "Tracer.on_backward was replaced at run time",
    "tracer_hooks_cleared": "a global hook of the tracer was removed",
    "unobserved_update": "changed with no recorded update",
}


@needs_bwrap
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_switching_the_tracer_off_fails_every_condition(name, cache, tmp_path):
    """Each of these is an illegal pre-eval TTT that blinds the tracer; each used to be (or would be) a C3 PASS."""
    a = _audit_hostile(name, cache, tmp_path)
    d = a.result.to_dict()
    assert d["verdict"]["overall"] == "FAIL"
    assert all(d["verdict"]["conditions"][c] == "FAIL" for c in ("C1", "C2", "C3", "C4")), d["verdict"]
    inst = [c for c in d["checks"] if c["id"] == "instrumentation"]
    assert [c["condition"] for c in inst] == ["C1", "C2", "C3", "C4"] and TAMPERED[name] in inst[0]["message"]
    assert "FAIL C3    instrumentation: the instrumentation was disturbed" in format_terminal([AuditResult(target=name, dynamic=a.result)])


@needs_bwrap
@pytest.mark.slow
@pytest.mark.parametrize("name,code", [("exit_after_scoring", 3), ("killed_after_scoring", 137)])
def test_a_run_that_fails_after_scoring_is_a_fail(name, code, cache, tmp_path):
    a = _audit_hostile(name, cache, tmp_path)
    d = a.result.to_dict()
    run = next(c for c in d["checks"] if c["id"] == "run-completed")
    assert a.sandbox.exit_code == code and run["verdict"] == "FAIL" and "cannot back the score" in run["message"]
    assert d["verdict"]["overall"] == "FAIL" and d["reported"]["val_loss"] is not None


@needs_bwrap
@pytest.mark.slow
def test_a_rigged_trace_is_a_fail_with_reasons_and_no_host_bytes(cache, tmp_path):
    a = _audit_hostile("trace_planted", cache, tmp_path)
    d = a.result.to_dict()
    assert d["verdict"]["overall"] == "FAIL"
    files = next(c for c in d["checks"] if c["id"] == "trace-files")
    assert files["verdict"] == "FAIL" and "refused (a symbolic link)" in files["message"] \
        and "refused (a FIFO)" in files["message"]
    text = json.dumps(d) + format_terminal([AuditResult(target="x", dynamic=a.result)]) + a.sandbox.stdout + a.sandbox.stderr
    assert "root:x:0:0" not in text and "scorefirst-sandbox\n" not in a.sandbox.stderr


@needs_bwrap
@pytest.mark.slow
def test_a_deleted_trace_is_a_fail(cache, tmp_path):
    a = _audit_hostile("trace_deleted", cache, tmp_path)
    d = a.result.to_dict()
    run = next(c for c in d["checks"] if c["id"] == "run-completed")
    assert run["verdict"] == "FAIL" and "no trace" in run["message"] and d["verdict"]["overall"] == "FAIL"


@needs_bwrap
@pytest.mark.slow
def test_a_latin1_coding_cookie_runs(cache, tmp_path):
    """PEP 263: a latin-1 source file is valid Python; the legal evaluation in it passes."""
    a = _audit_hostile("latin1_cookie", cache, tmp_path)
    d = a.result.to_dict()
    assert a.sandbox.exit_code == 0, a.sandbox.tail()
    assert d["verdict"]["overall"] == "PASS", [(c["id"], c["message"]) for c in d["checks"]]
