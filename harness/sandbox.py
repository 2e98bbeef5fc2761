"""Run an untrusted submission in a subprocess: no network, a private working directory, nothing of the host it
does not need, and CPU, memory, disk, process and wall-time limits. What the run attempted and why it stopped are
reported.

Isolation (``isolation="auto"`` means bubblewrap, and nothing less):

* ``bwrap`` (bubblewrap, ``apt-get install -y bubblewrap``): new network, pid, ipc, uts (and cgroup) namespaces; a
  new root holding only what Python needs, read-only (``/usr`` and its ``/bin``/``/lib`` links, the interpreter's
  prefix and site-packages, a handful of ``/etc`` files, a synthetic ``passwd``/``group``/``hosts``), the data
  read-only, ``/sys`` read-only (gloo and CUDA enumerate devices there), the work directory the only writable path,
  a minimal ``/dev`` (the GPUs' device nodes with ``gpu``), a private size-limited ``/tmp``. No
  host ``/run``, ``/var``, ``/home``, ``/root``: no host Unix socket exists in there to connect to. As root the
  script runs as uid/gid 65534 with no capability (bubblewrap keeps only CAP_SETUID/SETGID for the helper that
  drops to it); as another user it runs as that user in its own user namespace. As root the work directory is a
  tmpfs of ``Limits.disk_mb``.
* ``unshare``: ``unshare -n`` (``-rn`` when not root), a new network namespace only. The file system, host Unix
  sockets, the process table and the caller's uid are NOT isolated; it is used only when asked for by name, and
  the result says so.
* ``none``: only when asked for explicitly; the result says the network was not isolated.

The harness treats the work directory as hostile after the run: the child's stdout and stderr go to files the
harness opened outside it, and whatever the caller wants back (``collect``) is copied out with ``O_NOFOLLOW``, a
regular-file check and a size cap, by file descriptor; a symlink, FIFO or device planted there is a problem
reported in the result, never followed or waited on. Every wait has a timeout. Cgroups, the guard's folder and
work-directory mounts are named with the harness's pid, and those of a harness that died (kill -9) are removed by
the next run.

The guard in ``harness/tracer`` reports network attempts (a Unix-socket connect outside the work directory
included) and writes outside the work directory through a channel the script cannot rewrite
(:mod:`harness.guard_channel`); a network attempt becomes a PG-NET finding in the audit.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from audits.dynamic_result import SandboxInfo
from harness.guard_channel import GUARD_PREFIX, GuardChannel
from harness.tracer import ENV_GUARD_LOG, ENV_WORKDIR, python_path

BWRAP_APT = "apt-get update && apt-get install -y bubblewrap"
SANDBOX_UID = SANDBOX_GID = 65534          # nobody: what the script runs as when the harness is root
OUTPUT_CAP = 1 << 20                       # bytes of stdout / stderr kept (the end)
UNSHARE_LIMITS = ("unshare isolates only the network: the file system (host files, /etc, /root, /home), host Unix "
                  "sockets (/run/*.sock), the process table and the caller's uid are NOT isolated")


class SandboxUnavailable(RuntimeError):
    """No isolation mechanism works here and running unisolated was not allowed."""


@dataclass
class Limits:
    cpu_seconds: int = 900
    memory_mb: int = 8192
    wall_seconds: int = 900
    processes: int = 512          # tasks (threads count too) in the sandbox
    file_mb: int = 4096
    disk_mb: int = 4096           # the work directory (a tmpfs as root), /tmp and /dev/shm each

    def to_dict(self) -> dict:
        return {"cpu_seconds": self.cpu_seconds, "memory_mb": self.memory_mb, "wall_seconds": self.wall_seconds,
                "disk_mb": self.disk_mb}


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
    collected: dict[str, Path] = field(default_factory=dict)  # name in the work dir -> safe copy
    collect_problems: list[str] = field(default_factory=list)  # what in the work dir was refused, and why

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    def info(self) -> SandboxInfo:
        return SandboxInfo(self.isolation, self.network, self.wall_seconds, self.exit_code, self.limits.to_dict(),
                           list(self.network_attempts), self.killed, list(self.write_attempts))

    def tail(self, n: int = 2000) -> str:
        return (self.stdout[-n:] + ("\n" if self.stdout else "") + self.stderr[-n:]).strip()


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv + ["true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_probe_cache: dict[str, bool] = {}


def available(kind: str) -> bool:
    """Whether an isolation mechanism works on this machine (tried once per process)."""
    if kind not in _probe_cache:
        if kind == "bwrap":
            ok = shutil.which("bwrap") is not None and _works(["bwrap", *_bwrap_user(), "--unshare-net",
                                                               "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                                                               "/proc", "--"])
        elif kind == "unshare":
            ok = shutil.which("unshare") is not None and _works(_unshare_argv())
        else:
            ok = kind == "none"
        _probe_cache[kind] = ok
    return _probe_cache[kind]


def process_limit_available() -> bool:
    """Whether a fork bomb can be capped here: RLIMIT_NPROC works for a non-root uid (the sandbox drops root to
    one under bubblewrap); root keeping its uid needs a pids cgroup."""
    if os.geteuid() != 0 or available("bwrap"):
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

# Inside bubblewrap, before the script: as root, drop to the sandbox uid (every capability goes with uid 0, and
# bubblewrap has set no_new_privs, so nothing gets them back); then cap the tasks of that uid.
# `python -I -S -c _DROP uid gid nproc argv...`
_DROP = """
import os, resource, sys
uid, gid, nproc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
if os.getuid() == 0 or os.geteuid() == 0:
    raise SystemExit("scorefirst sandbox: could not drop root")
if nproc:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
os.execvp(sys.argv[4], sys.argv[4:])
"""


def _unshare_argv() -> list[str]:
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def _bwrap_user() -> list[str]:
    """Root: no user namespace (a namespace mapped from root would leave the script host-root for file access);
    the helper drops to SANDBOX_UID. Anyone else: their own uid in a new user namespace."""
    if os.geteuid() == 0:
        return ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-user", "--cap-drop", "ALL"]


def pick_isolation(requested: str = "auto") -> str:
    """``auto`` is bubblewrap or a refusal: the network-only fallbacks run untrusted code only when named."""
    if requested == "auto":
        if available("bwrap"):
            return "bwrap"
        alt = " (--sandbox unshare works here, but " + UNSHARE_LIMITS + ")" if available("unshare") else ""
        raise SandboxUnavailable("bubblewrap is not available, and nothing less isolates an untrusted script: install "
                                 "it (" + BWRAP_APT + "), or name a weaker sandbox explicitly with --sandbox unshare "
                                 "or --sandbox none" + alt)
    if requested not in ("bwrap", "unshare", "none"):
        raise ValueError(f"unknown isolation {requested!r}")
    if not available(requested):
        raise SandboxUnavailable(f"{requested} does not work on this machine"
                                 + (f" (install it: {BWRAP_APT})" if requested == "bwrap" else ""))
    return requested


# --- leftovers of a harness that died (kill -9) -----------------------------------------------------------------------

_OWNED = re.compile(r"^scorefirst-(?:[a-z]+-)?(\d+)-")   # scorefirst-[kind-]<harness pid>-...
TEMP_PREFIXES = ("scorefirst-dynamic-", "scorefirst-run-", GUARD_PREFIX)


def owned_name(kind: str) -> str:
    """A name carrying this harness's pid, so that a later run can tell leftovers of a dead harness."""
    return f"scorefirst-{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _dead(name: str) -> bool:
    m = _OWNED.match(name)
    if not m:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_stale() -> list[str]:
    """Remove what harnesses that no longer run left behind: work-dir mounts, cgroups (their processes killed),
    temporary folders. Returns what was removed."""
    removed: list[str] = []
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        mounts = []
    for line in mounts:
        fields = line.split(" - ", 1)
        if len(fields) != 2:
            continue
        target = fields[0].split()[4].replace("\\040", " ")
        source = fields[1].split()[1] if len(fields[1].split()) > 1 else ""
        if source.startswith("scorefirst-") and _dead(source):
            if subprocess.run(["umount", "-l", target], capture_output=True, timeout=20).returncode == 0:
                removed.append(f"mount {target}")
    root = Path("/sys/fs/cgroup")
    for base in [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        try:
            entries = [d for d in base.iterdir() if d.name.startswith("scorefirst-") and d.is_dir()]
        except OSError:
            continue
        for d in entries:
            if _dead(d.name):
                _Cgroups.remove(d)
                if not d.exists():
                    removed.append(f"cgroup {d}")
    tmp = Path(tempfile.gettempdir())
    try:
        leftovers = [p for p in tmp.iterdir() if p.name.startswith(TEMP_PREFIXES)]
    except OSError:
        leftovers = []
    for p in leftovers:
        if _dead(p.name) and p.is_dir() and not p.is_symlink():
            _unmount_below(p)
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"folder {p}")
    return removed


def _unmount_below(folder: Path) -> None:
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(folder.resolve()) + "/"
    for line in mounts:
        target = line.split(" - ", 1)[0].split()[4].replace("\\040", " ")
        if target.startswith(prefix):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=20)


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
                self.remove(d)
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
        for d in self.dirs:
            self._kill(d)

    @staticmethod
    def _kill(d: Path) -> None:
        for _ in range(50):
            try:
                pids = {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                return
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)

    def close(self) -> None:
        for d in self.dirs:
            self.remove(d)

    @classmethod
    def remove(cls, d: Path) -> None:
        """Kill what is left in the cgroup, then remove it (retried while the killed tasks exit)."""
        cls._kill(d)
        for _ in range(40):
            try:
                d.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def _uid_tasks(uid: int) -> int:
    """Tasks (threads) of a uid, what RLIMIT_NPROC counts."""
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if p.stat().st_uid == uid:
                    n += sum(1 for _ in (p / "task").iterdir())
            except OSError:
                pass
    return n


# --- the work directory -----------------------------------------------------------------------------------------------


class _WorkMount:
    """As root: the work directory becomes a tmpfs of ``disk_mb`` owned by the sandbox uid, holding a copy of
    what the caller put there. Unmounted when the run ends. Where mounting fails, the folder stays as it was,
    handed to the sandbox uid."""

    def __init__(self, workdir: Path, disk_mb: int):
        self.workdir = workdir
        self.mounted = False
        self.source = owned_name("work")
        stash = Path(tempfile.mkdtemp(prefix=owned_name("run") + "-", dir=workdir.parent))
        try:
            for p in list(workdir.iterdir()):
                shutil.move(str(p), stash / p.name)
            opts = (f"size={disk_mb}m,nr_inodes={max(4096, disk_mb * 64)},mode=0755,uid={SANDBOX_UID},"
                    f"gid={SANDBOX_GID},nosuid,nodev")
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, self.source, str(workdir)], capture_output=True,
                               timeout=30)
            self.mounted = r.returncode == 0
            shutil.copytree(stash, workdir, symlinks=True, dirs_exist_ok=True)
            workdir.chmod(0o755)
            for p in [workdir, *workdir.rglob("*")]:  # the sandbox uid writes here, mounted or not
                os.lchown(p, SANDBOX_UID, SANDBOX_GID)
        finally:
            shutil.rmtree(stash, ignore_errors=True)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.workdir)], capture_output=True, timeout=30)
            self.mounted = False


# --- reading what the run left, as hostile input ----------------------------------------------------------------------


def _read_capped(f, cap: int = OUTPUT_CAP) -> str:
    """The last ``cap`` bytes of a file the harness opened itself."""
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - cap))
    data = f.read(cap)
    return (f"[... {size - cap:,} earlier bytes not kept]\n" if size > cap else "") + data.decode("utf-8", "replace")


_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def import_tree(workdir: Path, name: str, dest: Path, budget: int, max_files: int = 10_000) -> list[str]:
    """Copy ``workdir/name`` (a file or a folder tree) to ``dest`` the way hostile input must be read: every open
    relative to a descriptor, ``O_NOFOLLOW``, non-blocking, a regular-file/folder check on the opened descriptor,
    at most ``budget`` bytes and ``max_files`` entries. Returns the problems (what was refused and why)."""
    problems: list[str] = []
    state = {"budget": budget, "files": 0, "max_files": max_files}
    try:
        root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    except OSError as e:
        return [f"{workdir}: cannot open the work directory ({e.strerror})"]
    try:
        _import_entry(root, name, dest, name, problems, state, 0)
    finally:
        os.close(root)
    return problems


def _import_entry(dirfd: int, name: str, dest: Path, shown: str, problems: list[str], state: dict, depth: int) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dirfd)
    except FileNotFoundError:
        problems.append(f"{shown}: missing")
        return
    except OSError as e:
        why = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        problems.append(f"{shown}: refused ({why})")
        return
    try:
        st = os.fstat(fd)
        state["files"] += 1
        if state["files"] > state["max_files"]:
            problems.append(f"{shown}: refused (more than {state['max_files']:,} entries)")
            return
        if stat.S_ISDIR(st.st_mode):
            if depth >= 8:
                problems.append(f"{shown}: refused (folders nested deeper than 8)")
                return
            dest.mkdir(parents=True, exist_ok=True)
            for child in sorted(os.listdir(fd))[: state["max_files"] + 1]:
                _import_entry(fd, child, dest / child, f"{shown}/{child}", problems, state, depth + 1)
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > state["budget"]:
                problems.append(f"{shown}: refused ({st.st_size:,} bytes, over the {state['budget']:,} left to read)")
                return
            os.set_blocking(fd, True)
            left = st.st_size
            with open(dest, "wb") as out:
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
            state["budget"] -= st.st_size
        else:
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            problems.append(f"{shown}: refused ({kind})")
    finally:
        os.close(fd)


# --- running ----------------------------------------------------------------------------------------------------------


def run(argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None, ro_paths: Sequence[Path] = (),
        limits: Limits | None = None, isolation: str = "auto", gpu: bool = False, collect: Sequence[str] = (),
        collect_to: Path | None = None) -> SandboxResult:
    """Run ``argv`` in ``workdir`` (which must exist and becomes the only writable place besides a private /tmp).

    ``env`` is the whole environment of the child (PYTHONPATH gets the guard prepended). ``ro_paths`` are bound
    read-only. ``collect``: names in the work directory to copy, as hostile input (:func:`import_tree`), into
    ``collect_to`` once the run is over (``SandboxResult.collected``; what was refused in ``collect_problems``).
    Under bubblewrap as root the work directory is a tmpfs that is gone when this returns: collect what you need."""
    limits = limits or Limits()
    if collect and collect_to is None:
        raise ValueError("collect needs collect_to")
    kind = pick_isolation(isolation)
    reap_stale()
    workdir = Path(workdir).resolve()
    root = os.geteuid() == 0
    drop = kind == "bwrap" and root
    child_env = dict(env if env is not None else os.environ)
    child_env["PYTHONPATH"] = python_path(child_env.get("PYTHONPATH"))
    child_env[ENV_WORKDIR] = str(workdir)
    child_env.setdefault("HOME", str(workdir))
    child_env.setdefault("TMPDIR", "/tmp" if kind == "bwrap" else str(workdir / "tmp"))
    (workdir / "tmp").mkdir(exist_ok=True)

    private = Path(tempfile.mkdtemp(prefix=owned_name("run") + "-"))   # never bound into the sandbox
    channel = cg = mount = None
    try:
        channel = GuardChannel()
        child_env[ENV_GUARD_LOG] = str(channel.path)
        cg = _Cgroups(f"{os.getpid()}-{uuid.uuid4().hex[:12]}", limits.processes, None if gpu else limits.memory_mb)
        enforced = [f"RLIMIT_CPU={limits.cpu_seconds}s", f"wall {limits.wall_seconds}s",
                    f"RLIMIT_FSIZE={limits.file_mb}MB"]
        if not gpu:
            enforced.append(f"RLIMIT_AS={limits.memory_mb}MB")
        enforced += cg.enforced
        if kind == "bwrap" and root:
            mount = _WorkMount(workdir, limits.disk_mb)
            enforced.append(f"work directory: tmpfs of {limits.disk_mb} MB" if mount.mounted else
                            "work directory: NOT size-limited (the tmpfs mount failed; RLIMIT_FSIZE per file only)")
        else:
            enforced.append("work directory: NOT size-limited (not root: RLIMIT_FSIZE per file only)")
        if kind == "bwrap":
            enforced.append(f"/tmp, /dev/shm: tmpfs of {limits.disk_mb} MB each")
        nproc = 0
        if drop:
            nproc = _uid_tasks(SANDBOX_UID) + limits.processes
            enforced.append(f"uid {SANDBOX_UID} (root dropped, no capabilities); RLIMIT_NPROC={nproc}")
        elif not cg.has_pids:
            if root:
                enforced.append("process limit NOT enforced (root ignores RLIMIT_NPROC and no pids cgroup could be "
                                "made)")
            else:
                nproc = _uid_tasks(os.getuid()) + limits.processes
                enforced.append(f"RLIMIT_NPROC={nproc} (current tasks of this uid + {limits.processes})")

        def preexec():
            os.setsid()
            cg.join()
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20, limits.file_mb << 20))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if not gpu:
                resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
            if nproc and not drop:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        if kind == "bwrap":
            cmd = _bwrap_cmd(argv, workdir, child_env, ro_paths, limits, gpu, channel.dir, private, drop, nproc)
            who = (f"uid {SANDBOX_UID} without capabilities" if drop else
                   f"uid {os.getuid()} in its own user namespace, without capabilities")
            isolation_text = ("bubblewrap: new network, pid, ipc and uts namespaces; a new root with only /usr, the "
                              "Python prefix and site-packages, the data (read-only) and minimal /etc and /dev; "
                              "no host /run, /var, /home or /root; private /tmp; the work directory the only "
                              f"writable path; runs as {who}")
            network = "none (empty network namespace)"
        elif kind == "unshare":
            cmd = _unshare_argv() + [sys.executable, "-I", "-S", "-c", _LOOPBACK_UP] + list(argv)
            isolation_text = (f"unshare (asked for by name): new network namespace only; {UNSHARE_LIMITS} "
                              f"(install bubblewrap for full isolation: {BWRAP_APT})")
            network = "none (empty network namespace)"
        else:
            cmd = list(argv)
            isolation_text = "none: NOT isolated (explicitly requested)"
            network = "host network (NOT isolated)"

        res = _execute(cmd, workdir, child_env, preexec, limits, cg, channel, private, kind)
        res.isolation, res.network, res.enforced = isolation_text, network, enforced
        channel = None
        if collect:
            dest = Path(collect_to)
            dest.mkdir(parents=True, exist_ok=True)
            budget = limits.disk_mb << 20
            for name in collect:
                target = dest / name
                problems = import_tree(workdir, name, target, budget)
                if target.exists():
                    res.collected[name] = target
                res.collect_problems += [p for p in problems if not p.endswith(": missing") or target.exists()]
        return res
    finally:
        if channel is not None:
            channel.close()
        if cg is not None:
            cg.close()
        if mount is not None:
            mount.close()
        shutil.rmtree(private, ignore_errors=True)


def _execute(cmd, workdir, child_env, preexec, limits: Limits, cg: _Cgroups, channel: GuardChannel, private: Path,
             kind: str) -> SandboxResult:
    """Start the child with stdout/stderr in files of ``private`` (never in the work directory), wait with the wall
    limit, kill what is left, and read everything back by the descriptors the harness holds."""
    t0 = time.monotonic()
    with open(private / "stdout", "w+b") as out, open(private / "stderr", "w+b") as err:
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, env=child_env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, preexec_fn=preexec)
        except BaseException:
            cg.kill_all()
            raise
        timed_out = threading.Event()

        def on_timeout():
            timed_out.set()
            _kill_tree(proc.pid, cg)

        timer = threading.Timer(limits.wall_seconds, on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_tree(proc.pid, cg)
            raise
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        cpu = usage.ru_utime + usage.ru_stime
        _kill_tree(proc.pid, cg)  # stragglers (daemonized children) die with the run
        oom = cg.oom_killed()
        stdout, stderr = _read_capped(out), _read_capped(err)
    guard = channel.close()
    code = proc.returncode
    sig = -code if code < 0 else (code - 128 if kind == "bwrap" and code > 128 else None)
    killed = None
    if timed_out.is_set():
        killed = f"wall-time limit ({limits.wall_seconds} s)"
    elif sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds - 1):
        killed = f"CPU-time limit ({limits.cpu_seconds} s)"
    elif oom or (code != 0 and _memory_error(stderr)):
        killed = f"memory limit ({limits.memory_mb} MB)"
    elif code != 0 and _process_error(stderr):
        killed = f"process limit ({limits.processes})"
    elif code != 0 and _disk_error(stderr):
        killed = f"disk limit ({limits.disk_mb} MB)"
    return SandboxResult("", "", code, wall, cpu, limits, killed, guard.network, guard.writes, [], stdout, stderr,
                         workdir, guard.processes, guard.problems)


def _bwrap_cmd(argv, workdir: Path, env: dict[str, str], ro_paths, limits: Limits, gpu: bool, channel_dir: Path,
               private: Path, drop: bool, nproc: int) -> list[str]:
    """The bubblewrap command line: a new root built from the few paths the script needs."""
    size = ["--size", str(limits.disk_mb << 20)]
    cmd = ["bwrap", *_bwrap_user(), "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--hostname", "scorefirst-sandbox", "--die-with-parent", "--new-session"]
    made: set[str] = {"/"}

    def parents(target: Path) -> None:
        for p in reversed(target.parents):
            if str(p) not in made:
                made.add(str(p))
                cmd.extend(["--perms", "0755", "--dir", str(p)])

    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
        made.add(str(p))
    cmd += ["--perms", "0755", "--dir", "/etc"]
    made.add("/etc")
    etc = _synthetic_etc(private, workdir, drop)
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "host.conf",
                 "protocols", "services", "mime.types"):
        p = Path("/etc") / name
        if p.exists():
            cmd += ["--ro-bind", str(p.resolve()), str(p)]
    for p in sorted(etc.iterdir()):
        cmd += ["--ro-bind", str(p), f"/etc/{p.name}"]
    cmd += ["--proc", "/proc"]
    cmd += ["--dev", "/dev"]
    if gpu:  # the GPUs' device nodes, nothing else of the host's /dev
        for p in sorted(Path("/dev").glob("nvidia*")):
            cmd += ["--dev-bind", str(p), str(p)]
    cmd += ["--ro-bind", "/sys", "/sys"]  # read-only device listing: gloo enumerates PCI devices, CUDA its GPUs
    made.update({"/proc", "/dev", "/sys"})
    cmd += ["--perms", "1777", *size, "--tmpfs", "/tmp", "--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    made.update({"/tmp", "/dev/shm"})
    for p in [*_visible(ro_paths, env), channel_dir]:
        if str(p) in made:
            continue
        if drop and p.is_dir() and not p.stat().st_mode & 0o001:
            continue  # an owner-only folder the unprivileged user could not enter: what it needs below is bound apart
        parents(p)
        cmd += ["--ro-bind", str(p), str(p)]
        made.add(str(p))
    parents(workdir)
    cmd += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--"]
    helper = [sys.executable, "-I", "-S", "-c", _DROP, str(SANDBOX_UID), str(SANDBOX_GID), str(nproc)]
    return cmd + helper + list(argv)


def _synthetic_etc(private: Path, workdir: Path, drop: bool) -> Path:
    """passwd, group and hosts naming only the sandbox user and this sandbox's own name."""
    etc = private / "etc"
    etc.mkdir()
    uid, gid = (SANDBOX_UID, SANDBOX_GID) if drop else (os.getuid(), os.getgid())
    (etc / "passwd").write_text(f"root:x:0:0::/nonexistent:/usr/sbin/nologin\n"
                                f"scorefirst:x:{uid}:{gid}::{workdir}:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nscorefirst:x:{gid}:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost scorefirst-sandbox\n::1 localhost ip6-localhost\n")
    (etc / "hostname").write_text("scorefirst-sandbox\n")
    for p in etc.iterdir():
        p.chmod(0o644)
    etc.chmod(0o755)
    private.chmod(0o711)
    return etc


def _visible(ro_paths: Sequence[Path], env: dict[str, str]) -> list[Path]:
    """Read-only binds: the given paths, the interpreter's prefixes and folder (a virtualenv, pyenv's base) and the
    PYTHONPATH entries (the guard, the tracer) — nothing else of the host."""
    extra = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent,
             Path(os.path.realpath(sys.executable)).parent.parent]
    extra += [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    out: list[Path] = []
    for p in [*ro_paths, *extra]:
        p = Path(p).resolve()
        if p.exists() and p not in out and not any(_covers(q, p) for q in out):
            out = [q for q in out if not _covers(p, q)] + [p]
    return out


def _covers(outer: Path, inner: Path) -> bool:
    """Binding `outer` also makes `inner` usable inside: it lies below, and every folder on the way down lets the
    sandbox's unprivileged user through. A virtualenv inside an owner-only clone (`mktemp -d`) is bound itself, on
    parents the sandbox creates traversable, instead of through the owner-only folder it would be hidden behind."""
    if not inner.is_relative_to(outer):
        return False
    folder = inner.parent if inner != outer else inner
    while True:
        try:
            if not folder.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
        if folder == outer or folder == folder.parent:
            return True
        folder = folder.parent


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


def _disk_error(stderr: str) -> bool:
    return any(s in stderr for s in ("No space left on device", "[Errno 28]", "File size limit exceeded"))

