"""Which state scores: the lineage of the traced parameters' versions, so that a restore is recognised.

Every update the tracer records creates a version whose parent is the version it changed. Before a backward pass
that reads validation positions, the content of every tracked tensor at the current version is fingerprinted (a
checkpoint). When tensors change outside an optimizer step (``load_state_dict``, ``p.data.copy_(saved)``), their
content is compared with the checkpoints of the current version's ancestors: if every tensor changed since an
ancestor v0 holds exactly its content at v0 again, the state *is* v0 — a restore — and the updates since v0 are
reverted (they no longer inform any later score). This is what PG-TTT-006 needs: a warm-up on validation tokens
followed by a restore of the weights leaves a state that never trained on them.

Fingerprints are two 64-bit position-weighted sums of each tensor's bits, computed where the tensor lives (one
host transfer per checkpoint), so equal fingerprints mean equal content short of a deliberate collision.
"""

from __future__ import annotations

import weakref

_M1, _M2 = 0x9E3779B97F4A7C15 - (1 << 64), 0x2545F4914F6CDD1D
_INT_OF_SIZE = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def to_host(torch, tensors: list) -> list:
    """Each tensor's values as a flat numpy array, in one copy to the host per device rather than one per tensor:
    every copy from a GPU waits for its queue of kernels."""
    import numpy as np

    out: list = [None] * len(tensors)
    by_device: dict = {}
    for k, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(k)
    for idx in by_device.values():
        flat = torch.cat([tensors[k].reshape(-1) for k in idx]).cpu().numpy()
        ends = np.cumsum([tensors[k].numel() for k in idx])
        for k, e in zip(idx, ends):
            out[k] = flat[e - tensors[k].numel() : e]
    return out


def fingerprints(torch, tensors: list) -> list[tuple[int, int]]:
    """(h1, h2) per tensor: sums of its bits (as int64) times two position-dependent odd multipliers."""
    if not tensors:
        return []
    sums = []
    with torch.no_grad():
        for t in tensors:
            flat = t.detach().reshape(-1)
            size = _INT_OF_SIZE.get(flat.element_size())
            bits = flat.view(getattr(torch, size)) if size else flat.to(torch.float64).view(torch.int64)
            bits = bits.to(torch.int64)
            i = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64)
            w1 = (i * _M1) | 1
            w2 = ((i + 7) * _M2) ^ (i >> 3)
            sums.append(torch.stack([(bits * w1).sum(), ((bits + i) * (w2 | 1)).sum()]))
        host = to_host(torch, sums)
    return [(int(a) ^ (int(t.numel()) << 1), int(b)) for (a, b), t in zip(host, tensors)]


class Lineage:
    """Versions of the traced state: parents, which versions are updates and what each touched, checkpoints."""

    def __init__(self):
        self.parent: dict[int, int | None] = {0: None}
        self.updates: set[int] = set()
        self.touched: dict[int, set[int]] = {}       # update version -> ids of the tensors it changed
        self.checkpoints: dict[int, dict[int, tuple]] = {}   # version -> id -> (weakref, fingerprint)
        self.newest = 0

    def new_version(self, parent: int, update: bool, touched_ids=()) -> int:
        self.newest += 1
        v = self.newest
        self.parent[v] = parent
        if update:
            self.updates.add(v)
            self.touched[v] = set(touched_ids)
        return v

    def checkpoint(self, torch, version: int, tensors: dict) -> None:
        """Fingerprint ``tensors`` (id -> tensor) as the content of ``version`` (once per version)."""
        if version in self.checkpoints:
            return
        ids = list(tensors)
        fps = fingerprints(torch, [tensors[i] for i in ids])
        self.checkpoints[version] = {i: (weakref.ref(tensors[i]), fp) for i, fp in zip(ids, fps)}

    def ancestors(self, version: int):
        """(ancestor, update versions between it and ``version``), nearest first."""
        path: list[int] = []
        v = version
        while True:
            p = self.parent.get(v)
            if p is None:
                return
            if v in self.updates:
                path.append(v)
            yield p, list(path)
            v = p

    def find_restore(self, torch, version: int, changed: dict, alive: dict, wanted: set) -> tuple[int, list] | None:
        """The ancestor v0 the state now equals, and the updates that reverts; None when there is none.

        ``changed``: id -> tensor changed outside an optimizer just now; ``alive``: every tracked tensor; ``wanted``:
        the update versions worth reverting (those that read validation positions) — an ancestor whose path holds
        none of them is no restore worth recording.
        """
        current: dict[int, tuple] = {}
        for v0, path in self.ancestors(version):
            if not wanted.intersection(path):
                continue
            ck = self.checkpoints.get(v0)
            if ck is None:
                continue
            must = set(changed)
            for u in path:
                must |= {i for i in self.touched.get(u, ()) if i in alive}
            if any(i not in ck or ck[i][0]() is not alive.get(i, changed.get(i)) for i in must):
                continue
            todo = [i for i in must if i not in current]
            for i, fp in zip(todo, fingerprints(torch, [alive.get(i, changed.get(i)) for i in todo])):
                current[i] = fp
            if all(current[i] == ck[i][1] for i in must):
                return v0, path
        return None
