"""An audit hook recording what the sandbox blocks: network attempts and writes outside the work directory.

One JSON line per attempt into ``$SCOREFIRST_GUARD_LOG``, a FIFO the harness reads while the run goes on (see
``harness.guard_channel``): what was sent cannot be truncated, overwritten or deleted by the script, and the FIFO
lies outside the writable work directory. Each process first sends a "start" record and numbers its records (``n``),
so records that go missing, and lines the guard did not write, show. Lines stay under PIPE_BUF, so forks and threads
interleave whole lines. Loopback traffic and abstract or work-directory Unix sockets are local (torchrun's
rendezvous) and not recorded, and neither is a lookup of this machine's own name; a Unix-socket connect to a path
outside the work directory and /tmp is recorded (a host daemon's socket: docker, dbus, an ssh agent). The hook only
observes: the sandbox's network namespace and read-only mounts are what stop it.
"""

import json
import os
import sys

_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
_SELF = {os.uname().nodename}  # this machine's own name (torchrun's store resolves it): answered locally
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_fd = None
_n = 0
_allowed: tuple = ()
_allowed_sockets: tuple = ()
_seen: set = set()


def _send(record: dict) -> None:
    global _n
    try:
        os.write(_fd, (json.dumps({**record, "pid": os.getpid(), "n": _n}) + "\n").encode())
    except OSError:
        pass
    _n += 1


def _log(kind: str, what: str) -> None:
    key = (kind, what)
    if key in _seen or _fd is None:
        return
    _seen.add(key)
    _send({"kind": kind, "what": what[:1000]})


def _forked() -> None:
    global _n
    _n = 0
    _seen.clear()
    _send({"kind": "start"})


def _addr(a) -> str:
    if isinstance(a, (str, bytes)):
        return "unix:" + (a.decode("utf-8", "replace") if isinstance(a, bytes) else a)
    if isinstance(a, tuple) and len(a) >= 2:
        return f"{a[0]}:{a[1]}"
    return str(a)


def _is_ip(host: str) -> bool:
    """An address literal: getaddrinfo on it is no lookup (the connect that follows is what gets recorded)."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_local(a) -> bool:
    if isinstance(a, (str, bytes)):  # AF_UNIX: abstract (a leading NUL, private to the network namespace) or a path
        p = a.decode("utf-8", "replace") if isinstance(a, bytes) else a
        return p == "" or p.startswith("\0") or os.path.abspath(p).startswith(_allowed_sockets)
    if isinstance(a, tuple) and a and isinstance(a[0], int):  # AF_NETLINK (pid, groups): the kernel
        return True
    host = str(a[0]) if isinstance(a, tuple) and a else ""
    return host == "" or host.startswith(_LOCAL) or host in _SELF


def _local_name(host: str) -> bool:
    return host.startswith(_LOCAL) or host in _SELF or host in ("", "None")


def _hook(event: str, args: tuple) -> None:
    try:
        if event in ("socket.connect", "socket.sendto", "socket.bind"):
            addr = args[1]
            if not _is_local(addr):
                _log("network", f"{event.split('.')[1]} {_addr(addr)}")
        elif event == "socket.getaddrinfo":
            host = args[0]
            host = host.decode() if isinstance(host, bytes) else str(host)
            if not _local_name(host) and not _is_ip(host):
                _log("network", f"resolve {host}:{args[1]}")
        elif event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
            if not _local_name(str(args[0])):
                _log("network", f"resolve {args[0]}")
        elif event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if not isinstance(path, (str, bytes)):
                return
            writes = (mode is not None and any(c in mode for c in "wax+")) or \
                     (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes:
                p = os.path.abspath(path.decode() if isinstance(path, bytes) else path)
                if not p.startswith(_allowed):
                    _log("write", p)
    except Exception:
        pass


def install() -> None:
    global _fd, _allowed, _allowed_sockets
    _fd = os.open(os.environ["SCOREFIRST_GUARD_LOG"], os.O_WRONLY)
    os.set_inheritable(_fd, False)
    work = os.environ.get("SCOREFIRST_WORKDIR") or os.getcwd()
    _allowed = tuple(os.path.abspath(p) + os.sep for p in (work, "/tmp", "/dev", "/proc/self")) + ("/dev/null",)
    _allowed_sockets = _allowed[:2]
    _send({"kind": "start"})
    os.register_at_fork(after_in_child=_forked)
    sys.addaudithook(_hook)
