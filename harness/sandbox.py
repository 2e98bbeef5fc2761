"""Run an untrusted submission in a subprocess: no network, a private working directory, read-only everything else,
and CPU, memory, process and wall-time limits. What the run attempted and why it stopped are reported.

Isolation, best available first (``isolation="auto"``):

* ``bwrap`` (bubblewrap, ``apt-get install -y bubblewrap``): new network, pid, ipc and uts namespaces; the root
  file system bound read-only, a private ``/tmp``, the work directory the only writable place, read-only data
  binds; every capability dropped; killed with its parent.
* ``unshare``: ``unshare -n`` (``-rn`` when not root), a new network namespace only (its loopback brought up, for
  torchrun's rendezvous) — the file system and process table are *not* isolated, and the result says so.
* ``none``: only when asked for explicitly; the result says the network was not isolated.

Limits: CPU seconds (``RLIMIT_CPU``), address space (``RLIMIT_AS``; off for GPU runs, CUDA reserves huge virtual
ranges) plus a memory cgroup where one can be created, processes (a pids cgroup as root — root ignores
``RLIMIT_NPROC`` — else ``RLIMIT_NPROC`` above the caller's current count), file size, and wall time (the whole
process tree is killed). The guard in ``harness/tracer`` reports network attempts and writes outside the work
directory through a channel the script cannot rewrite (:mod:`harness.guard_channel`); a network attempt becomes a
PG-NET finding in the audit.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.dynamic_result import SandboxInfo
from harness.guard_channel import GuardChannel
from harness.tracer import ENV_GUARD_LOG, ENV_WORKDIR, python_path

BWRAP_APT = "apt-get update && apt-get install -y bubblewrap"


class SandboxUnavailable(RuntimeError):
    """No isolation mechanism works here and running unisolated was not allowed."""


@dataclass
class Limits:
    cpu_seconds: int = 900
    memory_mb: int = 8192
    wall_seconds: int = 900
    processes: int = 512          # tasks (threads count too) in the sandbox
    file_mb: int = 4096

    def to_dict(self) -> dict:
        return {"cpu_seconds": self.cpu_seconds, "memory_mb": self.memory_mb, "wall_seconds": self.wall_seconds}


@dataclass
class SandboxResult:
    isolation: str
    network: str
    exit_code: int | None
    wall_seconds: float
    cpu_seconds: float
    limits: Limits
    killed: str | None
    network_attempts: list[str] = field(default_factory=list)
    write_attempts: list[str] = field(default_factory=list)
    enforced: list[str] = field(default_factory=list)   # which limits were enforced, and how
    stdout: str = ""
    stderr: str = ""
    workdir: Path | None = None
    guarded: int = 0                                      # processes whose guard reported its start
    guard_problems: list[str] = field(default_factory=list)   # tampering with the guard's channel

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    def info(self) -> SandboxInfo:
        return SandboxInfo(self.isolation, self.network, self.wall_seconds, self.exit_code, self.limits.to_dict(),
                           list(self.network_attempts), self.killed)

    def tail(self, n: int = 2000) -> str:
        return (self.stdout[-n:] + ("\n" if self.stdout else "") + self.stderr[-n:]).strip()


def _works(argv: list[str], preexec=None) -> bool:
    try:
        return subprocess.run(argv + ["true"], capture_output=True, timeout=20, preexec_fn=preexec).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_probe_cache: dict[str, bool] = {}


def available(kind: str) -> bool:
    """Whether an isolation mechanism works on this machine (tried once per process)."""
    if kind not in _probe_cache:
        if kind == "bwrap":
            ok = shutil.which("bwrap") is not None and _works(["bwrap", "--unshare-net", "--ro-bind", "/", "/",
                                                               "--dev", "/dev", "--proc", "/proc", "--"])
        elif kind == "unshare":
            ok = shutil.which("unshare") is not None and _works(_unshare_argv())
        else:
            ok = kind == "none"
        _probe_cache[kind] = ok
    return _probe_cache[kind]


def process_limit_available() -> bool:
    """Whether a fork bomb can be capped here: RLIMIT_NPROC works for non-root users; root needs a pids cgroup."""
    if os.geteuid() != 0:
        return True
    cg = _Cgroups(f"probe-{uuid.uuid4().hex[:8]}", 16, None)
    ok = cg.has_pids
    cg.close()
    return ok


# A new network namespace starts with its loopback interface down (bubblewrap brings it up itself): torchrun's
# rendezvous on localhost needs it. Run as `python -I -S -c _LOOPBACK_UP argv...` (no site: no guard, no tracer).
_LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
s.close()
os.execvp(sys.argv[1], sys.argv[1:])
"""


def _unshare_argv() -> list[str]:
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def pick_isolation(requested: str = "auto") -> str:
    if requested == "auto":
        for kind in ("bwrap", "unshare"):
            if available(kind):
                return kind
        raise SandboxUnavailable("no sandbox available: install bubblewrap (" + BWRAP_APT + ") or util-linux "
                                 "unshare with user namespaces, or pass --sandbox none to run without isolation")
    if requested not in ("bwrap", "unshare", "none"):
        raise ValueError(f"unknown isolation {requested!r}")
    if not available(requested):
        raise SandboxUnavailable(f"{requested} does not work on this machine"
                                 + (f" (install it: {BWRAP_APT})" if requested == "bwrap" else ""))
    return requested


# --- cgroups --------------------------------------------------------------------------------------------------------


class _Cgroups:
    """Private pids and memory cgroups (v1 or v2) when this process may create them; otherwise nothing."""

    def __init__(self, name: str, processes: int, memory_mb: int | None):
        self.dirs: list[Path] = []
        self.enforced: list[str] = []
        self.memory_dir: Path | None = None
        root = Path("/sys/fs/cgroup")
        v2 = (root / "cgroup.controllers").is_file()
        for ctrl, key, value in (("pids", "pids.max", str(processes)),
                                 ("memory", "memory.max" if v2 else "memory.limit_in_bytes",
                                  str(memory_mb << 20) if memory_mb else None)):
            if value is None:
                continue
            base = root if v2 else root / ctrl
            d = base / f"scorefirst-{name}"
            try:
                d.mkdir()
            except OSError:
                continue
            try:
                (d / key).write_text(value)
            except OSError:
                self._rmdir(d)
                continue
            self.dirs.append(d)
            self.enforced.append(f"{ctrl} cgroup ({key}={value})")
            if ctrl == "memory":
                self.memory_dir = d
        self.has_pids = any(d.parent.name == "pids" or (v2 and (d / "pids.max").exists()) for d in self.dirs)

    def join(self) -> None:
        """In the child, before exec: move this process into every cgroup."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def oom_killed(self) -> bool:
        d = self.memory_dir
        if d is None:
            return False
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            try:
                for line in (d / name).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key and int(v) > 0:
                        return True
            except (OSError, ValueError):
                continue
        return False

    def kill_all(self) -> None:
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                try:
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)

    def close(self) -> None:
        self.kill_all()
        for d in self.dirs:
            self._rmdir(d)

    @staticmethod
    def _rmdir(d: Path) -> None:
        for _ in range(40):
            try:
                d.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def _user_tasks() -> int:
    """Tasks (threads) of this real uid, what RLIMIT_NPROC counts."""
    uid, n = os.getuid(), 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if p.stat().st_uid == uid:
                    n += sum(1 for _ in (p / "task").iterdir())
            except OSError:
                pass
    return n


# --- running ----------------------------------------------------------------------------------------------------------


def run(argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None, ro_paths: Sequence[Path] = (),
        limits: Limits | None = None, isolation: str = "auto", gpu: bool = False) -> SandboxResult:
    """Run ``argv`` in ``workdir`` (which must exist and becomes the only writable place besides a private /tmp).

    ``env`` is the whole environment of the child (PYTHONPATH gets the guard prepended). ``ro_paths`` are bound
    read-only (they are read-only anyway under bwrap; listed so that they exist inside)."""
    limits = limits or Limits()
    kind = pick_isolation(isolation)
    workdir = Path(workdir).resolve()
    child_env = dict(env if env is not None else os.environ)
    child_env["PYTHONPATH"] = python_path(child_env.get("PYTHONPATH"))
    child_env[ENV_WORKDIR] = str(workdir)
    child_env.setdefault("HOME", str(workdir))
    child_env.setdefault("TMPDIR", "/tmp" if kind == "bwrap" else str(workdir / "tmp"))
    (workdir / "tmp").mkdir(exist_ok=True)

    channel = GuardChannel()
    child_env[ENV_GUARD_LOG] = str(channel.path)
    name = uuid.uuid4().hex[:12]
    cg = _Cgroups(name, limits.processes, None if gpu else limits.memory_mb)
    enforced = [f"RLIMIT_CPU={limits.cpu_seconds}s", f"wall {limits.wall_seconds}s", f"RLIMIT_FSIZE={limits.file_mb}MB"]
    if not gpu:
        enforced.append(f"RLIMIT_AS={limits.memory_mb}MB")
    enforced += cg.enforced
    nproc = None
    if not cg.has_pids:
        if os.geteuid() == 0:
            enforced.append("process limit NOT enforced (root ignores RLIMIT_NPROC and no pids cgroup could be made)")
        else:
            nproc = _user_tasks() + limits.processes
            enforced.append(f"RLIMIT_NPROC={nproc} (current tasks of this uid + {limits.processes})")

    def preexec():
        os.setsid()
        cg.join()
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20, limits.file_mb << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if not gpu:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    if kind == "bwrap":
        cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
               "--new-session", "--cap-drop", "ALL", "--ro-bind", "/", "/"]
        cmd += ["--dev-bind", "/dev", "/dev"] if gpu else ["--dev", "/dev"]
        cmd += ["--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--bind", str(workdir), str(workdir)]
        for p in [*_visible(ro_paths, child_env), channel.dir]:
            cmd += ["--ro-bind", str(p), str(p)]
        cmd += ["--chdir", str(workdir), "--"] + list(argv)
        isolation_text = ("bubblewrap: new network, pid, ipc and uts namespaces; read-only root file system, private "
                          "/tmp, the work directory the only writable path; capabilities dropped")
        network = "none (empty network namespace)"
    elif kind == "unshare":
        cmd = _unshare_argv() + [sys.executable, "-I", "-S", "-c", _LOOPBACK_UP] + list(argv)
        isolation_text = ("unshare: new network namespace only; the file system and process table are NOT isolated "
                          f"(install bubblewrap for full isolation: {BWRAP_APT})")
        network = "none (empty network namespace)"
    else:
        cmd = list(argv)
        isolation_text = "none: NOT isolated (explicitly requested)"
        network = "host network (NOT isolated)"

    out_path, err_path = workdir / ".scorefirst-stdout", workdir / ".scorefirst-stderr"
    t0 = time.monotonic()
    killed = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, env=child_env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, preexec_fn=preexec)
        except BaseException:
            cg.close()
            channel.close()
            raise
        timed_out = threading.Event()

        def on_timeout():
            timed_out.set()
            _kill_tree(proc.pid, cg)

        timer = threading.Timer(limits.wall_seconds, on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            _kill_tree(proc.pid, cg)
            channel.close()
            raise
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    cpu = usage.ru_utime + usage.ru_stime
    _kill_tree(proc.pid, cg)  # stragglers (daemonized children) die with the run
    oom = cg.oom_killed()
    cg.close()
    guard = channel.close()
    stdout = out_path.read_bytes().decode("utf-8", "replace")
    stderr = err_path.read_bytes().decode("utf-8", "replace")
    code = proc.returncode
    sig = -code if code < 0 else (code - 128 if kind == "bwrap" and code > 128 else None)
    if timed_out.is_set():
        killed = f"wall-time limit ({limits.wall_seconds} s)"
    elif sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds - 1):
        killed = f"CPU-time limit ({limits.cpu_seconds} s)"
    elif oom or (code != 0 and _memory_error(stderr)):
        killed = f"memory limit ({limits.memory_mb} MB)"
    elif code != 0 and _process_error(stderr):
        killed = f"process limit ({limits.processes})"
    return SandboxResult(isolation_text, network, code, wall, cpu, limits, killed, guard.network, guard.writes,
                         enforced, stdout, stderr, workdir, guard.processes, guard.problems)


def _visible(ro_paths: Sequence[Path], env: dict[str, str]) -> list[Path]:
    """Read-only binds: the given paths, plus the interpreter (a virtualenv under /tmp would be hidden by the
    private /tmp) and the PYTHONPATH entries (the guard, the tracer)."""

    extra = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent]
    extra += [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    out: list[Path] = []
    for p in [*ro_paths, *extra]:
        p = Path(p).resolve()
        if p.exists() and p not in out:
            out.append(p)
    return out


def _kill_tree(pid: int, cg: _Cgroups) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    cg.kill_all()


def _memory_error(stderr: str) -> bool:
    return any(s in stderr for s in ("MemoryError", "Cannot allocate memory", "std::bad_alloc",
                                     "can't allocate memory", "DefaultCPUAllocator: not enough memory",
                                     "out of memory"))


def _process_error(stderr: str) -> bool:
    return any(s in stderr for s in ("Resource temporarily unavailable", "can't start new thread",
                                     "BlockingIOError: [Errno 11]", "fork: retry"))


def make_workdir(base: Path | None = None, prefix: str = "scorefirst-run-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
