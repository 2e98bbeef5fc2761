"""How an audited submission is launched: plain ``python``, or ``torchrun`` with N processes.

Record submissions state ``torchrun --standalone --nproc_per_node=8 train_gpt.py`` in their README. The audit runs
them the same way, so that their distributed code paths (process group, sharded validation windows, all-reduced
TTT gradients) are what gets traced — with as many processes as the machine can give: one per GPU with ``--gpu``,
two on the CPU (gloo), the fewest that still make a multi-rank run. ``--nproc N`` overrides this (1: plain python).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

CPU_RANKS = 2
_NPROC = re.compile(r"^--nproc[_-]per[_-]node(?:=(.*))?$")


@dataclass(frozen=True)
class Launch:
    nproc: int
    torchrun: bool
    why: str

    def argv(self, script: str) -> list[str]:
        if not self.torchrun:
            return [sys.executable, script]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}",
                script]

    def describe(self) -> str:
        how = f"torchrun --nproc_per_node={self.nproc}" if self.torchrun else "python"
        return f"launched as {how} ({self.why})"


def stated_nproc(folder: Path) -> int | None:
    """``--nproc_per_node`` of the last torchrun command in the folder's README*/*.sh files; None when the
    submission states no torchrun launch (``gpu``/``auto`` count as 8, the track's GPUs)."""
    found = None
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.is_symlink() or not (p.suffix == ".sh" or p.name.lower().startswith("readme")):
            continue
        try:
            text = p.read_text(encoding="utf-8", errors="replace")[:2_000_000]
        except OSError:
            continue
        for line in text.replace("\\\n", " ").splitlines():
            if "torchrun" not in line and "torch.distributed.run" not in line:
                continue
            try:
                words = shlex.split(line.strip().lstrip("$ ").strip("`"), comments=True)
            except ValueError:
                words = line.split()
            for i, w in enumerate(words):
                m = _NPROC.match(w)
                if m:
                    value = m.group(1) if m.group(1) is not None else (words[i + 1] if i + 1 < len(words) else "")
                    found = int(value) if value.isdigit() and int(value) > 0 else 8
    return found


def resolve(folder: Path, requested: int | None, gpu: bool, gpus: int) -> Launch:
    """The launch of one audit run: ``requested`` (--nproc) wins; else the README's torchrun command, with as many
    processes as it states, capped at ``gpus`` with --gpu and at two on the CPU; else plain python."""
    if requested is not None:
        return Launch(requested, requested > 1, f"--nproc {requested}")
    stated = stated_nproc(folder)
    if stated is None:
        return Launch(1, False, "no torchrun command in the README")
    cap, where = (max(1, gpus), f"{max(1, gpus)} GPU(s) here") if gpu else (CPU_RANKS, "CPU ranks (gloo)")
    n = min(stated, cap)
    return Launch(n, True, f"the README states --nproc_per_node={stated}" + (f", capped at {where}" if n < stated
                                                                              else ""))
