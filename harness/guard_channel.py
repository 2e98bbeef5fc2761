"""The channel through which the in-sandbox guard reports (``harness/tracer/scorefirst_guard.py``): a FIFO outside
the work directory, read by a thread of the harness while the run goes on.

Why not a file: the script could truncate, overwrite or delete a log it can write, and hide its network attempts.
Records sent into a FIFO are in the harness's hands at once; the FIFO lives in a folder of its own, bound read-only
into the bubblewrap sandbox (a FIFO stays writable on a read-only mount; it cannot be truncated, and not deleted
there). Under ``unshare`` the script could delete the FIFO's name, which stops later processes from reporting but
takes back nothing already sent.

Tamper evidence: each guarded process sends a "start" record and numbers its records, so the harness can tell
records that went missing (read away by another reader of the FIFO) and lines the guard did not write. The guard
runs inside the script's process, so a script can still silence it before acting: the sandbox's empty network
namespace and read-only mounts, not the log, are what stop it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GuardRecords:
    network: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    processes: int = 0                                   # guarded processes that reported their start
    problems: list[str] = field(default_factory=list)    # evidence of tampering with the channel


def parse(data: bytes) -> GuardRecords:
    """The records of a run: network attempts and writes (each once), and what shows tampering."""
    out = GuardRecords()
    foreign = 0
    segments: dict[int, list[set[int]]] = {}   # pid -> record numbers since each of its starts
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            e = json.loads(line)
            kind, pid, n = e["kind"], int(e["pid"]), int(e["n"])
        except (ValueError, KeyError, TypeError):
            foreign += 1
            continue
        if kind == "start" and n == 0:
            out.processes += 1
            segments.setdefault(pid, []).append({0})
            continue
        if kind not in ("network", "write") or pid not in segments:
            foreign += 1
            continue
        segments[pid][-1].add(n)
        target = out.network if kind == "network" else out.writes
        what = str(e.get("what"))
        if what not in target:
            target.append(what)
    if foreign:
        out.problems.append(f"{foreign} line(s) in the guard's channel that the guard did not write (the script wrote "
                            f"into it)")
    for pid, segs in segments.items():
        missing = sum(max(s) + 1 - len(s) for s in segs)
        if missing:
            out.problems.append(f"{missing} record(s) of process {pid} never arrived (read away from the channel)")
    return out


GUARD_PREFIX = "scorefirst-guard-"
DATA_CAP = 16 << 20   # bytes of records kept; a flood beyond is itself evidence


class GuardChannel:
    """A FIFO in a private folder, drained by a thread from before the script starts until after it ends."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{GUARD_PREFIX}{os.getpid()}-"))
        os.chmod(self.dir, 0o755)
        self.path = self.dir / "guard.fifo"
        os.mkfifo(self.path, 0o622)
        os.chmod(self.path, 0o622)
        self._r = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._w = os.open(self.path, os.O_WRONLY)  # held, so the reader never sees end-of-file between writers
        self._data = bytearray()
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="scorefirst-guard-channel", daemon=True)
        self._thread.start()

    def _read_all(self) -> None:
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            if len(self._data) + len(chunk) > DATA_CAP:
                self._dropped += len(chunk)
            else:
                self._data += chunk

    def _drain(self) -> None:
        while not self._stop.is_set():
            if select.select([self._r], [], [], 0.2)[0]:
                self._read_all()

    def close(self) -> GuardRecords:
        """Stop reading (the run is over: every process of it is dead), remove the FIFO, parse what came."""
        self._stop.set()
        self._thread.join()
        self._read_all()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self.dir, ignore_errors=True)
        records = parse(bytes(self._data))
        if self._dropped:
            records.problems.append(f"{self._dropped:,} bytes sent into the guard's channel beyond its "
                                    f"{DATA_CAP >> 20} MB cap (flooded) were not read")
        return records
