"""The tracer: installed by sitecustomize before an audited script starts; fills a ledger with what the script did.

Observed (all through public PyTorch entry points, hooked once at start-up; the forward through one
``TorchFunctionMode`` that stays entered for the whole run, so every spelling of an operation is seen alike):

* ``F.embedding`` with a vocabulary-sized weight: the input token ids. Whether they are validation tokens is
  decided by where they were read from (``scorefirst_provenance``): ids derived from a ``fineweb_val_*`` file are
  matched against the validation stream (an index of its 8-grams), giving the validation position of every input
  token — a row made of several stretches of the stream (documents concatenated out of order) is cut into one
  segment per stretch; ids derived only from training shards are ignored, whatever their content. Ids whose
  origin was lost are matched by content: a segment that also occurs in the training shards is ambiguous (its
  looks are flagged, and an update reading it is a META "ambiguous-read" event, not an UPDATE of those positions).
* a contraction (``F.linear``, ``@``/``matmul``, ``mm``/``bmm``/``addmm``, ``einsum``, ``tensordot``) with a
  vocabulary-sized last dimension whose leading shape is the last matched input (or its flattening): the output
  projection, however it is written (``h @ tok_emb.weight.T`` with tied embeddings too). The last such contraction of
  a forward wins, so an MLP that happens to be vocabulary-wide is not mistaken for it. ``cross_entropy``,
  ``nll_loss``, ``log_softmax`` or ``softmax`` (function, ``torch.`` or tensor method) on a tensor of the same size
  after it: the final logits (softcap, LoRA head deltas, temperature, a torch-side tilt applied). When the forward
  ends, a LOOK event records the NLL of the full distribution at each matched position's target, computed with or
  without grad — the first LOOK of a position is its score; a segment's last input is taken to predict the
  stream's next token unless the loss (``cross_entropy``/``nll_loss``) was given a different target there; the
  harness decides which evaluation pass counts (see ``harness.dynamic``). A LOOK whose vocabulary-wide values left
  torch (``.numpy()``, ``.tolist()``, ``np.asarray``) is flagged: the script may have scored them outside torch.
* ``torch.autograd.backward`` / ``torch.autograd.grad``: the positions of the looks made with grad since the last
  backward feed the gradient.
* the global optimizer step hooks (``torch.optim.optimizer.register_optimizer_step_{pre,post}_hook``, which fire for
  every ``torch.optim.Optimizer`` subclass, Muon included): an UPDATE reading those positions (each row's targets
  and its inputs), touching the optimizer's parameters — plus the positions of reverted updates whose momentum the
  optimizer still carries. A row that starts at a document's BOS reads that BOS only as context: per-document
  evaluation takes the document boundaries as given, and the BOS is the previous document's last target, which
  per-document batches may score later. It is not part of the UPDATE; its first such read is a META
  "boundary-context" event, so the checks can still say it happened.
* in-place changes of tracked tensors (model parameters and the leaves gradients reached) outside an optimizer:
  version counters, plus a sampled sum for ``.data`` writes, which bypass the counter. A change that returns every
  changed tensor to its content at an earlier version is a restore (``scorefirst_state``): a META event names the
  updates it reverts.
* ``torch.distributed``: joining a process group (a META event), and collectives, counted so that per-rank ledgers
  can be merged in an order every rank agrees on (SYNC events).
* lines printed with ``val_loss`` and ``val_bpb``: META "report" events (the script's reported results); the device
  of the first look: a META "device" event.
* tamper evidence (``scorefirst_tamper``): the observer mode checked at every module forward, the whole
  instrumentation at every scoring forward, optimizer step and at the end, parameter content compared around each
  scoring span: META "tamper" events.

Everything is best effort and never raises into the script; tracer errors are recorded as META events.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import sys
import time
import weakref

import numpy as np

import scorefirst_provenance as prov
from scorefirst_state import Lineage, to_host
from scorefirst_tamper import Integrity, Spans

_REPORT = re.compile(r"val_loss[\s:=]+(-?[0-9]+(?:\.([0-9]+))?(?:[eE]-?[0-9]+)?).*?"
                     r"val_bpb[\s:=]+(-?[0-9]+(?:\.([0-9]+))?(?:[eE]-?[0-9]+)?)")
K = 8
MAX_CANDIDATES = 64
AMBIGUOUS_RANGES_CAP = 4096
_FROMFILE = np.fromfile


class WindowIndex:
    """Where the token ids of a row sit in the validation stream: sorted hashes of every 8-gram.

    A row is cut into segments, each a maximal run of the row that continues one stretch of the stream: a window
    of the stream is one segment; documents concatenated out of stream order (a global-SGD batch of scored
    documents) are one segment each; padding matches nothing."""

    def __init__(self, val: np.ndarray):
        self.val = val.astype(np.int64)
        n = self.val.size - K + 1
        if n <= 0:
            self.hashes = np.zeros(0, np.uint64)
            self.order = np.zeros(0, np.int64)
            return
        h = _hashes(self.val)
        self.order = np.argsort(h, kind="stable")
        self.hashes = h[self.order]

    def candidate(self, h: np.ndarray) -> np.ndarray:
        """Per hash, the earliest stream position whose K-gram has it (-1 where none does)."""
        at = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
        return np.where(self.hashes[at] == h, self.order[at], -1)

    def longest(self, seq: np.ndarray) -> tuple[int, int]:
        """(start, length) of the longest stretch of the stream that ``seq`` begins with (-1, 0 if under K)."""
        if seq.size < K or self.hashes.size == 0:
            return -1, 0
        h = _hashes(seq[:K])[0]
        lo = np.searchsorted(self.hashes, h, "left")
        hi = min(np.searchsorted(self.hashes, h, "right"), lo + MAX_CANDIDATES)
        best, best_m = -1, 0
        N, T = self.val.size, seq.size
        for s in self.order[lo:hi]:
            s = int(s)
            seg = self.val[s : min(s + T, N)]
            neq = np.flatnonzero(seg != seq[: seg.size])
            m = int(neq[0]) if neq.size else seg.size
            if m > best_m:
                best, best_m = s, m
        return (best, best_m) if best_m >= K else (-1, 0)

    def whole_rows(self, rows: np.ndarray) -> np.ndarray:
        """Per row, the stream start of the first candidate window that the whole row equals (-1 if none): what
        :meth:`longest` would pick for such a row, found for all rows in a few array operations."""
        T = rows.shape[1]
        cand = self.candidate(_hashes(rows[:, :K])[:, 0])
        ok = (cand >= 0) & (cand + T <= self.val.size)
        if ok.any():
            idx = cand[ok, None] + np.arange(T)[None]
            ok[ok] = (self.val[idx] == rows[ok]).all(axis=1)
        return np.where(ok, cand, -1)

    def segments(self, rows: np.ndarray) -> np.ndarray:
        """(row, offset in the row, stream start, length) of every segment of every row, as an (S, 4) array."""
        out = []
        R, T = rows.shape
        if T < K or self.hashes.size == 0:
            return np.zeros((0, 4), np.int64)
        whole = self.whole_rows(rows)
        for r in range(R):
            if whole[r] >= 0:  # the common case, settled for every row at once: the row is one window
                out.append((r, 0, int(whole[r]), T))
                continue
            row, o, known = rows[r], 0, None
            while T - o >= K:
                s, m = self.longest(row[o:])
                if m:
                    out.append((r, o, s, m))
                    o += m
                    continue
                if known is None:  # where in the rest of the row a segment could start at all
                    known = np.flatnonzero(self.candidate(_hashes(row)) >= 0)
                nxt = known[np.searchsorted(known, o + 1):]
                if not nxt.size:
                    break
                o = int(nxt[0])
        return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def _hashes(seq: np.ndarray) -> np.ndarray:
    """The hash of every K-gram along the last axis of ``seq`` (empty there if it is shorter)."""
    n = seq.shape[-1] - K + 1
    if n <= 0:
        return np.zeros((*seq.shape[:-1], 0), np.uint64)
    h = np.zeros((*seq.shape[:-1], n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(K):
            h = h * np.uint64(1_000_003) + seq[..., j : j + n].astype(np.uint64)
    return h


def read_split(data_path: str | None, split: str) -> np.ndarray:
    """Every token of a split's shards in the official layout (256 x int32 header, uint16 tokens)."""
    import glob

    parts = []
    for path in sorted(glob.glob(os.path.join(data_path or "", f"fineweb_{split}_*.bin"))) if data_path else []:
        header = _FROMFILE(path, dtype="<i4", count=256)
        parts.append(np.asarray(_FROMFILE(path, dtype="<u2", count=int(header[2]), offset=256 * 4)))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def _node(fn) -> tuple:
    """A key for an autograd node that outlives it: its Python object's address with the node's creation number. The
    address alone is reused once a graph is freed, so a look whose graph is gone (a forward with gradients that was
    never back-propagated) would match whichever node of a later graph lands there and charge its positions to an
    update that never read them."""
    seq = getattr(fn, "_sequence_nr", None)
    return id(fn), seq() if seq is not None else None


class _Ids:
    """The token ids of an embedding call, and where they sit in the validation stream once matched. Ids on a GPU
    are copied to the host without waiting (the copy is queued after the kernels that made them) and matched when
    their look is written, a forward later, by when the copy is long done: the tracer never makes the script wait
    for its queue of kernels here."""

    __slots__ = ("shape", "bits", "host", "event", "segs", "amb")

    def __init__(self, shape: tuple, bits: int, host, event):
        self.shape, self.bits, self.host, self.event = shape, bits, host, event
        self.segs = self.amb = None


class _Look:
    __slots__ = ("logits", "final", "shape", "ids", "grad", "exported", "targets")

    def __init__(self, logits, ids: _Ids, grad):
        self.logits, self.final, self.shape, self.ids = logits, None, ids.shape, ids
        self.grad = grad  # gradients were enabled when the projection ran
        self.exported = False  # its vocabulary-wide values left torch
        self.targets = None  # the target ids the loss was given, when it was cross_entropy / nll_loss


class _Deferred:
    """The ledger writer, with the NLL of looks left on their device until a batch of them goes to the host in one
    copy (a copy per look would make the script wait for its queue of kernels at every forward). Anything else
    written — an update, a META event, a collective — first writes the looks before it, in order; so does the
    passing of ``SECONDS`` (what a killed run loses stays small)."""

    LIMIT, SECONDS = 64, 2.0

    def __init__(self, writer, torch):
        self._writer, self._torch, self._pending, self._since = writer, torch, [], None

    def look(self, nll, parts: list) -> None:
        """``parts``: (ranges, selection of ``nll`` or None for all of it, version, flags) per LOOK event."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        self._pending.append((nll, parts))
        if len(self._pending) >= self.LIMIT or now - self._since > self.SECONDS:
            self.drain()

    def drain(self) -> None:
        pending, self._pending, self._since = self._pending, [], None
        if not pending:
            return
        for values, (_, parts) in zip(to_host(self._torch, [nll for nll, _ in pending]), pending):
            for ranges, select, version, flags in parts:
                self._writer.look(ranges, values if select is None else values[select], version, flags)

    def __getattr__(self, name):
        self.drain()
        return getattr(self._writer, name)


class Tracer:
    def __init__(self, ledger_dir: str, val_path: str, vocab: int, rank: int, world: int):
        import torch

        from harness.ledger import FLAG_AMBIGUOUS, FLAG_EXPORT, FLAG_GRAD, LedgerWriter, Ranges

        self.torch = torch
        self.Ranges = Ranges
        self.FLAG_GRAD, self.FLAG_EXPORT, self.FLAG_AMBIGUOUS = FLAG_GRAD, FLAG_EXPORT, FLAG_AMBIGUOUS
        self.data_path = os.environ.get("DATA_PATH")
        self.train_index: WindowIndex | None = None      # built when provenance is first lost
        self.vocab = vocab
        self.rank = rank
        val = np.load(val_path) if val_path.endswith(".npy") else np.fromfile(val_path, dtype="<u2")
        self.index = WindowIndex(val)
        self.val_t = torch.as_tensor(self.index.val)
        self.n = int(val.size)
        self.writer = _Deferred(LedgerWriter(ledger_dir, positions=self.n, rank=rank, flush_seconds=2.0,
                                             meta={"source": "tracer", "vocab": vocab, "world_size": world}), torch)
        self.writer.meta(event="trace-begin", rank=rank, world_size=world, vocab=vocab, n_tokens=self.n,
                         torch=torch.__version__, argv=list(sys.argv))
        self.lineage = Lineage()
        self.version = 0
        self.device = None
        self.map_key = None
        self.map: _Ids | None = None  # the last embedding input that may hold validation tokens
        self.look: _Look | None = None
        self.grad_looks: list[tuple] = []        # (ranges, _node keys, ambiguous) of looks not yet back-propagated
        self.step_ranges: list[np.ndarray] = []   # positions whose loss reached a backward since the last update
        self.amb_ranges: list[np.ndarray] = []    # the same, from rows of ambiguous provenance
        self.names: dict[int, str] = {}
        self.tracked: dict[int, tuple] = {}        # id -> (weakref, version counter, sampled sum)
        # memory reached past the version counter, by storage address: ``.data`` aliases (weakref, counter then,
        # storage), content replaced since the last snapshot, memory reached raw (compared at every check)
        self.aliases: list[tuple] = []
        self.suspect: set[int] = set()
        self.raw: set[int] = set()
        self.seen_modules: dict[int, weakref.ref] = {}   # id -> ref; an entry leaves when its module is freed
        self.val_dev: dict = {}                          # the validation tokens on each device a look used
        self.clean: set[int] = {0}                       # versions no live update on validation tokens led to
        self.val_updates: dict[int, np.ndarray] = {}   # update version -> validation ranges it read
        self.reverted: set[int] = set()                # update versions a restore reverted
        self.opt_history: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> versions in state
        self.bos = int(os.environ.get("SCOREFIRST_BOS", "1"))
        self.boundary_seen: set[int] = set()             # document starts already reported as leading context
        self.busy = False
        self.errors = 0
        self.integrity: Integrity | None = None         # set by install() once everything is in place
        self.spans = Spans(torch)
        self.tampered: set[tuple[str, str]] = set()

    # --- helpers ------------------------------------------------------------------------------------------------
    def error(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        if self.errors <= 20:
            try:
                self.writer.meta(event="tracer-error", where=where, error=repr(exc)[:300])
            except Exception:
                pass

    def tamper(self, kind: str, detail: str, where: str) -> None:
        """A META "tamper" event, once per finding: the run's instrumentation was disturbed."""
        if (kind, detail) in self.tampered:
            return
        self.tampered.add((kind, detail))
        self.writer.meta(event="tamper", kind=kind, detail=detail, where=where)

    def check_integrity(self, where: str, mode: bool = True) -> None:
        if self.integrity is not None:
            for kind, detail in self.integrity.problems(mode):
                self.tamper(kind, detail, where)

    def check_span(self, where: str) -> None:
        """Parameter content that changed since the current version was recorded, with no update recorded."""
        changed = self.spans.changed(self.version)
        if changed:
            names = [self.names.get(i) or "tensor" for i in changed]
            self.tamper("unobserved-update", f"{len(changed)} traced tensor(s) changed with no recorded update "
                        f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})", where)

    # --- forward --------------------------------------------------------------------------------------------------
    def on_embedding(self, ids) -> None:
        torch = self.torch
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or ids.dim() == 0:
            return
        same = self.map_key is not None and self.map_key[0]() is ids and self.map_key[1] == _counter(ids)
        if same and (self.look is None or self.look.final is None):
            return  # the same ids again in the same forward (value embeddings)
        self.finish_look()
        self.map_key = (weakref.ref(ids), _counter(ids))
        bits = prov.tensor_bits(ids)
        if bits == prov.TRAIN:
            self.map = None  # read from the training shards: not validation tokens, whatever their content
            return
        flat = ids.detach().reshape(-1, ids.shape[-1])
        if flat.device.type == "cuda":
            host = torch.empty(flat.shape, dtype=torch.int64, pin_memory=True)
            host.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.map = _Ids(tuple(ids.shape), bits, host, event)
            return
        self.map = _Ids(tuple(ids.shape), bits, flat.to("cpu", torch.int64).numpy(), None)
        if not len(self.segments_of(self.map)[0]):
            self.map = None

    def segments_of(self, ids: _Ids) -> tuple[np.ndarray, np.ndarray]:
        """(segments, which are ambiguous) of an embedding input, matched on first use."""
        if ids.segs is None:
            if ids.event is not None:
                ids.event.synchronize()
            rows = ids.host.numpy() if isinstance(ids.host, self.torch.Tensor) else ids.host
            ids.segs = self.index.segments(rows)
            ids.amb = np.zeros(len(ids.segs), dtype=bool)
            if len(ids.segs) and not ids.bits & prov.VAL:
                ids.amb = self.ambiguous(rows, ids.segs)
            ids.host = ids.event = None
        return ids.segs, ids.amb

    def ambiguous(self, rows: np.ndarray, segs: np.ndarray) -> np.ndarray:
        """Segments of unknown origin whose whole content also occurs in the training shards."""
        if self.train_index is None:
            self.train_index = WindowIndex(read_split(self.data_path, "train"))
        return np.asarray([self.train_index.longest(rows[r, o : o + m])[1] >= m for r, o, _, m in segs], dtype=bool)

    def on_projection(self, out) -> None:
        if self.map is None:
            return
        lead, shape = tuple(out.shape[:-1]), self.map.shape
        if lead != shape and not (len(lead) == 1 and lead[0] == math.prod(shape)):
            return
        if self.look is not None and self.look.final is not None:
            self.finish_look()  # the previous forward already reached its loss: this is a new forward
        if self.look is None:
            self.check_inplace()  # changes made before this forward, recorded before its look
            self.check_integrity("scoring forward", mode=False)  # inside the observer's handler
            if self.spans.version != self.version:
                self.spans.mark(self.version, self.alive())
            elif self.spans.due():
                self.check_span("scoring forward")
        self.look = _Look(out, self.map, bool(out.requires_grad) or self.torch.is_grad_enabled())

    def on_normalizer(self, x, dim=None, target=None) -> None:
        lk = self.look
        if lk is None or x.numel() != lk.logits.numel():
            return
        V = self.vocab
        if x.shape[-1] == V and (dim is None or dim in (-1, x.dim() - 1)):
            lk.final = x.reshape(*lk.shape, V)
        elif x.dim() >= 2 and x.shape[1] == V:  # (B, V, T) layout of cross_entropy
            lk.final = x.movedim(1, -1).reshape(*lk.shape, V)
        else:
            return
        if target is not None and target.numel() * V == x.numel() and not target.is_floating_point():
            lk.targets = target.reshape(lk.shape)

    def on_export(self, x) -> None:
        if self.look is not None and x.dim() >= 1 and x.shape[-1] == self.vocab:
            self.look.exported = True

    ROWS_ENTRIES = 1 << 26  # logits entries turned to float32 at once when a look's NLL is computed

    def finish_look(self) -> None:
        lk, self.look = self.look, None
        if lk is None:
            return
        torch = self.torch
        try:
            segs, amb = self.segments_of(lk.ids)
            if not len(segs):
                return
            logits = lk.final if lk.final is not None else lk.logits
            with torch.no_grad():
                lg = logits.detach().reshape(*lk.shape, self.vocab).reshape(-1, lk.shape[-1], self.vocab)
                if self.device is None:
                    self.note_device(lg.device)
                val = self.val_dev.get(lg.device)
                if val is None:
                    val = self.val_dev[lg.device] = self.val_t.to(lg.device)
                T = lg.shape[1]
                m = np.minimum(self.segment_ends(lk, segs, T), self.n - 1 - segs[:, 2])
                keep = m > 0
                if not keep.any():
                    return
                segs, m, amb = segs[keep], m[keep], amb[keep]
                within = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
                rows = np.repeat(segs[:, 0], m)  # non-decreasing: segments come in row order
                at = self.to_device(np.stack([rows * T + np.repeat(segs[:, 1], m) + within,
                                              np.repeat(segs[:, 2], m) + 1 + within]), lg.device)
                flat, tgt = at[0], val[at[1]]
                # rows in blocks, each turned to float32 and normalized once; one gather per block
                per = max(1, self.ROWS_ENTRIES // (T * self.vocab))
                parts = []
                for r0 in range(int(rows[0]), int(rows[-1]) + 1, per):
                    i, j = np.searchsorted(rows, [r0, r0 + per])
                    if i < j:
                        lp = torch.log_softmax(lg[r0 : r0 + per].float(), -1).reshape(-1, self.vocab)
                        parts.append(-lp[flat[i:j] - r0 * T, tgt[i:j]])
                nll = torch.cat(parts)
            rng = np.stack([segs[:, 2] + 1, segs[:, 2] + 1 + m], axis=1).astype(np.int64)
            nodes = {_node(t.grad_fn) for t in (lk.logits, lk.final) if t is not None and t.grad_fn is not None}
            flags = (self.FLAG_GRAD if (lk.grad or nodes) else 0) | (self.FLAG_EXPORT if lk.exported else 0)
            ends = np.cumsum(m)
            events = []
            for part, extra in ((~amb, 0), (amb, self.FLAG_AMBIGUOUS)):
                if part.any():
                    select = None if part.all() else \
                        np.concatenate([np.arange(e - n, e) for e, n in zip(ends[part], m[part])])
                    events.append((self.Ranges(rng[part]), select, self.version, flags | extra))
                    if nodes:
                        self.grad_looks.append((rng[part], nodes, bool(extra)))
            self.writer.look(nll, events)
        except Exception as exc:
            self.error("look", exc)

    def to_device(self, arr: np.ndarray, device):
        """An index array on ``device``, copied without waiting for the device (pinned memory on CUDA)."""
        t = self.torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
        if device.type == "cuda":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    def segment_ends(self, lk: _Look, segs: np.ndarray, T: int) -> np.ndarray:
        """How many targets each segment predicts. A segment's last input predicts the stream's next token when the
        row ends there (its targets are the next window's ids) or when the loss was given that token (ids gathered
        past the segment and masked); when the loss was given something else (the first id of the next document of
        a concatenation), that prediction is not of this stretch of the stream."""
        m = segs[:, 3].copy()
        inner = np.flatnonzero(segs[:, 1] + segs[:, 3] < T)
        if inner.size and lk.targets is not None:
            r, col, nxt = segs[inner, 0], segs[inner, 1] + segs[inner, 3] - 1, segs[inner, 2] + segs[inner, 3]
            ok = nxt < self.n
            tg = lk.targets.reshape(-1, T)[self.torch.as_tensor(r), self.torch.as_tensor(col)].to("cpu").numpy()
            m[inner[~ok | (tg != self.index.val[np.minimum(nxt, self.n - 1)])]] -= 1
        return m

    def note_device(self, device) -> None:
        self.device = device
        name = self.torch.cuda.get_device_name(device) if device.type == "cuda" else None
        self.writer.meta(event="device", device=device.type, name=name)

    # --- backward, updates ------------------------------------------------------------------------------------------
    def on_backward(self, tensors) -> None:
        """The looks whose logits this backward reaches fed it: their positions join the next update."""
        self.finish_look()
        self.spans.verified = False  # gradients exist now: the next scoring forward compares the content
        if not self.grad_looks:
            return
        nodes, leaves = self.walk(tensors)
        keep = []
        for rng, ids, amb in self.grad_looks:
            if ids & nodes:
                (self.amb_ranges if amb else self.step_ranges).append(rng)
            else:
                keep.append((rng, ids, amb))
        if len(keep) < len(self.grad_looks):
            for var in leaves:  # SLOT deltas, adapters: manual in-place updates of them must be seen too
                self.track(var, f"leaf{tuple(var.shape)}")
            if self.version in self.clean:  # not yet trained on validation tokens: what a restore returns to
                self.lineage.checkpoint(self.torch, self.version, self.alive())
        self.grad_looks = keep

    def walk(self, tensors) -> tuple[set, list]:
        """The autograd nodes a backward from ``tensors`` reaches (as :func:`_node` keys), and its leaf tensors."""
        todo = [t.grad_fn for t in tensors if getattr(t, "grad_fn", None) is not None]
        seen: set = set()
        leaves = []
        while todo and len(seen) < 500_000:
            fn = todo.pop()
            if fn is None:
                continue
            key = _node(fn)
            if key in seen:
                continue
            seen.add(key)
            var = getattr(fn, "variable", None)
            if var is not None:
                leaves.append(var)
            todo.extend(f for f, _ in getattr(fn, "next_functions", ()) if f is not None)
        return seen, leaves

    def before_step(self, opt) -> None:
        self.finish_look()
        self.check_inplace()
        self.check_integrity("optimizer step")
        self.check_span(f"{type(opt).__name__}.step")
        if not any(isinstance(v, self.torch.Tensor) for st in opt.state.values() for v in st.values()):
            self.opt_history[opt] = []  # a fresh or cleared optimizer carries nothing

    def on_step(self, opt) -> None:
        self.finish_look()
        params = [p for g in opt.param_groups for p in g["params"]]
        with_grad = [p for p in params if getattr(p, "grad", None) is not None]
        for p in params:
            self.track(p, None)
        history = self.opt_history.setdefault(opt, [])
        carried = [u for u in history if u in self.reverted]
        how = f"{type(opt).__name__}.step"
        if carried:
            how += f" (optimizer state carried over from reverted updates {_spans(carried)})"
            history[:] = [u for u in history if u not in carried]
        history.append(self.record_update(with_grad, how, [self.val_updates[u] for u in carried
                                                             if u in self.val_updates]))
        self.grad_looks = []  # forwards never back-propagated before this step fed nothing
        self.snapshot()
        self.spans.mark(self.version, self.alive())

    def record_update(self, tensors: list, how: str, carried: list | None = None) -> int:
        """An UPDATE reading the positions of the looks back-propagated since the last one (and ``carried``: the
        positions of reverted updates whose gradients an optimizer's state still holds)."""
        rng = np.concatenate(self.step_ranges) if self.step_ranges else np.zeros((0, 2), np.int64)
        # inputs s .. s+m-1 and targets s+1 .. s+m were read: the ranges of targets, extended one to the left
        # unless the row's first input is a document's BOS (see the module docstring)
        boundary = np.zeros(0, np.int64)
        if rng.size:
            rng = rng.copy()
            lead = rng[:, 0] - 1
            at_bos = (lead >= 1) & (self.index.val[np.maximum(lead, 0)] == self.bos)
            rng[~at_bos, 0] -= 1
            boundary = np.unique(lead[at_bos])
        if carried:
            rng = np.concatenate([rng, *carried])
        self.step_ranges = []
        parent = self.version
        self.version = self.lineage.new_version(parent, True, [id(t) for t in tensors])
        if rng.size:
            self.val_updates[self.version] = rng
        elif parent in self.clean:
            self.clean.add(self.version)
        names = [self.names.get(id(t)) or f"tensor{tuple(t.shape)}" for t in tensors]
        self.writer.update(self.Ranges(rng), [how] + names, self.version)
        new = [int(p) for p in boundary if int(p) not in self.boundary_seen]
        if new:
            self.boundary_seen.update(new)
            self.writer.meta(event="boundary-context", version=self.version, positions=new)
        if self.amb_ranges:
            amb = np.concatenate(self.amb_ranges)
            amb[:, 0] -= 1
            self.amb_ranges = []
            self.writer.meta(event="ambiguous-read", version=self.version, positions=int((amb[:, 1] - amb[:, 0]).sum()),
                             ranges=amb[:AMBIGUOUS_RANGES_CAP].tolist(), ranges_total=int(len(amb)))
        return self.version

    # --- in-place changes -------------------------------------------------------------------------------------------
    def track(self, t, name) -> None:
        if id(t) in self.tracked:
            return
        if name is not None:
            self.names.setdefault(id(t), name)
        self.tracked[id(t)] = (weakref.ref(t), _counter(t), self.sampled([t])[0])

    def sampled(self, tensors: list) -> list[float]:
        """A sum of 16 entries spread over each tensor: catches writes the version counter does not count. One copy
        to the host per device for the whole list, so that checking a model costs one synchronisation, not one per
        parameter."""
        torch = self.torch
        with torch.no_grad():
            parts = []
            for t in tensors:
                flat = t.detach().reshape(-1)
                parts.append(flat[:: max(1, flat.numel() // 16)][:16].to(torch.float64))
            return [float(v.sum()) for v in to_host(torch, parts)]  # each its own sum: not the others' rounding

    def alive(self) -> dict:
        out = {}
        for k, (ref, _, _) in self.tracked.items():
            t = ref()
            if t is not None:
                out[k] = t
        return out

    def live(self) -> dict:
        """:meth:`alive`, forgetting the tracked tensors that were freed."""
        out = self.alive()
        for k in [k for k in self.tracked if k not in out]:
            del self.tracked[k]
        return out

    def snapshot(self) -> None:
        live = self.live()
        keys = list(live)
        for k, fp in zip(keys, self.sampled([live[k] for k in keys])):
            self.tracked[k] = (self.tracked[k][0], _counter(live[k]), fp)
        self.suspect.clear()
        aliases = [(ref, ref(), where) for ref, _, where in self.aliases]  # writes so far are in the snapshot
        self.aliases = [(ref, _counter(a), where) for ref, a, where in aliases if a is not None]

    def on_alias(self, base, alias) -> None:
        """Memory was reached past its version counter through ``base`` (a tracked tensor, a view of one, or one
        tracked later: remembered by storage). ``alias`` is what reached it: a ``t.data`` tensor (writes to it count
        on its own counter, watched while it lives), ``None`` for ``t.data = x`` (new content, compared once),
        anything else for raw memory (``data_ptr``, ``untyped_storage``, DLPack, numpy: compared at every check
        from then on)."""
        where = _storage(base)
        if isinstance(alias, self.torch.Tensor):
            self.aliases.append((weakref.ref(alias), _counter(alias), where))
        elif alias is None:
            self.suspect.add(where)
        else:
            self.raw.add(where)

    def on_storages(self, live: dict, storages) -> set[int]:
        """Ids of the live tracked tensors on any of ``storages``."""
        storages = set(storages)
        return {k for k, t in live.items() if _storage(t) in storages} if storages else set()

    def check_inplace(self) -> None:
        """Tracked tensors whose content changed since the last snapshot, outside an optimizer step: their version
        counter moved, a ``.data`` alias of them was written, or — for those whose memory was reached past the
        counter — the sampled entries differ."""
        live = self.live()
        suspect = self.suspect | self.raw
        written = set()
        kept = []
        for ref, ver, where in self.aliases:
            a = ref()
            if a is None:
                suspect.add(where)  # written or not before it was freed: compare the content
            elif _counter(a) != ver:
                written.add(where)
                kept.append((ref, _counter(a), where))
            else:
                kept.append((ref, ver, where))
        self.aliases = kept
        written = self.on_storages(live, written)
        suspect = self.on_storages(live, suspect)
        if self.raw:  # raw memory stays watched only while a tracked tensor lives on it
            self.raw &= {_storage(live[k]) for k in suspect}
        changed = {k: t for k, t in live.items() if k in written or _counter(t) != self.tracked[k][1]}
        look = [k for k in suspect if k in live and k not in changed]
        for k, fp in zip(look, self.sampled([live[k] for k in look])):
            if fp != self.tracked[k][2]:
                changed[k] = live[k]
        self.suspect.clear()
        if not changed:
            return
        wanted = {u for u in self.val_updates if u not in self.reverted}
        found = self.lineage.find_restore(self.torch, self.version, changed, self.alive(), wanted) if wanted else None
        if found is None:
            self.record_update(list(changed.values()), "in-place")
        else:
            v0, path = found
            before, self.version = self.version, self.lineage.new_version(v0, False)
            self.reverted.update(path)
            if v0 in self.clean:
                self.clean.add(self.version)
            self.writer.meta(event="restore", to_version=v0, from_version=before, version=self.version,
                             reverted=path, tensors=len(changed),
                             names=[self.names.get(k) or f"tensor{tuple(t.shape)}" for k, t in changed.items()][:8])
        self.snapshot()
        self.spans.mark(self.version, self.alive())

    def on_module(self, module) -> None:
        seen = self.seen_modules
        seen[id(module)] = weakref.ref(module, lambda _, key=id(module): seen.pop(key, None))
        prefix = type(module).__name__
        for name, p in module.named_parameters():
            if id(p) not in self.names:
                self.names[id(p)] = f"{prefix}.{name}"
                self.track(p, None)

    # --- reports ------------------------------------------------------------------------------------------------------
    def on_text(self, text: str) -> None:
        for line in text.splitlines():
            m = _REPORT.search(line)
            if m:
                self.finish_look()
                decimals = min(len(m.group(2) or ""), len(m.group(4) or ""))
                self.writer.meta(event="report", val_loss=float(m.group(1)), val_bpb=float(m.group(3)),
                                 decimals=decimals, line=line.strip()[:500])

    def close(self) -> None:
        self.finish_look()
        try:
            self.check_inplace()
            self.check_integrity("end of run")
            self.check_span("end of run")
        except Exception as exc:
            self.error("close", exc)
        try:
            self.writer.meta(event="trace-end", updates=len(self.lineage.updates), errors=self.errors)
        finally:
            self.writer.close(complete=True)


def _counter(t) -> int | None:
    """A tensor's in-place version counter; None for inference tensors (made under ``torch.inference_mode``), which
    have none and raise on ``_version`` — scorers commonly run there, and their inputs must still be mapped."""
    try:
        return t._version
    except RuntimeError:
        return None


def _storage(t) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return None


def _spans(versions: list[int]) -> str:
    return ", ".join(map(str, versions[:6])) + (f", ... ({len(versions)} in all)" if len(versions) > 6 else "")


class _Stream:
    """sys.stdout / sys.stderr, forwarding everything and scanning complete lines for reported results."""

    def __init__(self, stream, tracer: Tracer):
        self._stream, self._tracer, self._buf = stream, tracer, ""

    def write(self, s):
        n = self._stream.write(s)
        try:
            self._buf += s
            if "\n" in self._buf:
                text, _, self._buf = self._buf.rpartition("\n")
                self._tracer.on_text(text)
            if len(self._buf) > 100_000:
                self._buf = self._buf[-10_000:]
        except Exception:
            pass
        return n

    def __getattr__(self, name):
        return getattr(self._stream, name)


_tracer: Tracer | None = None


def _guarded(fn):
    """Run a tracer callback; never re-enter it and never let it raise into the script."""
    def call(*a, **kw):
        t = _tracer
        if t is None or t.busy:
            return
        t.busy = True
        try:
            fn(t, *a, **kw)
        except Exception as exc:
            t.error(fn.__name__, exc)
        finally:
            t.busy = False
    return call


@_guarded
def _embedding(t, ids, weight):
    if weight.dim() == 2 and weight.shape[0] == t.vocab:
        t.on_embedding(ids)


@_guarded
def _contraction(t, out):
    t.on_projection(out)


@_guarded
def _normalizer(t, x, dim=None, target=None):
    t.on_normalizer(x, dim, target)


@_guarded
def _export(t, x):
    t.on_export(x)


@_guarded
def _alias(t, base, alias):
    t.on_alias(base, alias)


@_guarded
def _collective(t):
    t.finish_look()  # the look was computed before the collective: it must be written before the count moves


@_guarded
def _backward(t, tensors):
    t.on_backward(tensors)


@_guarded
def _before_step(t, opt):
    t.before_step(opt)


@_guarded
def _step(t, opt):
    t.on_step(opt)


@_guarded
def _module(t, module):
    t.on_module(module)


def _module_forward(module, args) -> None:
    """Every module forward: note the parameters of a module not seen before, and check that the observer mode is
    still in force. Runs for every module call of the script, so the common case is two lookups and the check."""
    t = _tracer
    if t is None or t.busy:
        return
    if id(module) not in t.seen_modules:
        _module(module)
    problem = t.integrity.mode_problem() if t.integrity is not None else None
    if problem:
        t.busy = True
        try:
            t.tamper("mode", problem, f"{type(module).__name__} forward")
        except Exception as exc:
            t.error("tamper", exc)
        finally:
            t.busy = False


_CONTRACTIONS = {"linear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "einsum",
                 "tensordot"}
_NORMALIZERS = {"cross_entropy", "nll_loss", "log_softmax", "softmax"}
_EXPORTS = {"numpy", "tolist", "__array__"}
_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "reduce_scatter",
                "reduce_scatter_tensor", "broadcast", "broadcast_object_list", "barrier", "monitored_barrier",
                "all_to_all", "all_to_all_single", "reduce", "gather", "gather_object", "scatter",
                "scatter_object_list")


_OTHER, _EMBED, _CONTRACT, _SOFTMAX, _LOSS, _EXPORT, _SHARED, _ALIAS, _INPLACE, _REPLACE = range(10)
_ALIASES = {"untyped_storage", "storage", "_typed_storage", "data_ptr", "__dlpack__", "__cuda_array_interface__"}


def _kind(torch, func) -> int:
    """What the observer does with a torch function (computed once per function, then looked up)."""
    import torch.nn.functional as F

    name = getattr(func, "__name__", "")
    if func is F.embedding:
        return _EMBED
    if name in _CONTRACTIONS:
        return _CONTRACT
    if name in _NORMALIZERS:
        return _SOFTMAX if name.endswith("softmax") else _LOSS
    if name in _EXPORTS:
        return _EXPORT if name == "tolist" else _SHARED  # numpy and __array__ share the tensor's memory
    if name in _ALIASES or func == torch.Tensor.data.__get__:
        return _ALIAS  # memory the version counter does not watch
    if func == torch.Tensor.data.__set__:
        return _REPLACE  # ``t.data = x``: new content, counter untouched
    if prov.writes_in_place(name):
        return _INPLACE
    return _OTHER


def _watched_call(Tensor, kind: int, args, kwargs, out) -> None:
    """Hand a watched call to the tracer (after the call: ``out`` is its result)."""
    if kind == _CONTRACT:  # ``einsum``'s first argument is its equation: only the result counts
        t = _tracer
        if isinstance(out, Tensor) and t is not None and out.dim() >= 2 and out.shape[-1] == t.vocab:
            _contraction(out)  # the vocabulary-wide ones only: most contractions of a forward are not
        return
    first = args[0] if args else kwargs.get("input")
    if not isinstance(first, Tensor):
        return
    if kind == _SOFTMAX:
        _normalizer(first, args[1] if len(args) > 1 else kwargs.get("dim"))
    elif kind == _LOSS:
        target = args[1] if len(args) > 1 else kwargs.get("target")
        _normalizer(first, None, target if isinstance(target, Tensor) else None)
    elif kind == _EXPORT or kind == _SHARED:
        _export(first)
        if kind == _SHARED:
            _alias(first, True)
    elif kind == _ALIAS or kind == _REPLACE:
        _alias(first, out if kind == _ALIAS else None)


def _observer(torch):
    """The forward observer: one TorchFunctionMode, entered for the whole run, sees every call of the watched
    operations whatever the spelling (function, ``torch.`` alias, tensor method, operator). It runs for every torch
    call of the script, attribute reads included, so what it does with a call is looked up by the function."""
    from torch.overrides import TorchFunctionMode

    Tensor, INT = torch.Tensor, prov._INT_DTYPES
    kinds: dict = {}

    class Observer(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if kwargs is None:
                kwargs = {}
            t = _tracer
            if t is None or t.busy:
                return func(*args, **kwargs)
            try:
                kind = kinds[func]
            except KeyError:
                kind = kinds[func] = _kind(torch, func)
            except TypeError:  # an unhashable callable
                kind = _kind(torch, func)
            if kind == _EMBED and len(args) >= 2:
                _embedding(args[0], args[1])
            out = func(*args, **kwargs)
            if kind == _INPLACE or kind == _REPLACE or (isinstance(out, Tensor) and out.dtype in INT) or \
                    (kind == _OTHER and (type(out) is tuple or type(out) is list)):
                try:
                    prov.propagate(torch, kind == _INPLACE or kind == _REPLACE, args, kwargs, out)
                except Exception:
                    pass
            if kind != _OTHER and kind != _INPLACE:
                _watched_call(Tensor, kind, args, kwargs, out)
            return out

    return Observer()


def install() -> None:
    """Start the ledger and the observers; the ledger folder is $SCOREFIRST_TRACE/rank{RANK}."""
    global _tracer
    repo = os.environ.get("SCOREFIRST_REPO")
    if repo and repo not in sys.path:
        sys.path.append(repo)  # after the script's own folder: its modules win
    # the tracer must see every operation, and torch.compile would fuse them out of its sight (and trace into its
    # hooks): a traced run is always eager, whatever the script or its environment asks for
    os.environ["TORCHDYNAMO_DISABLE"] = "1"
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    if os.environ.get("SCOREFIRST_TRACE_RANKS_ONLY") and "RANK" not in os.environ:
        return  # the torchrun launcher itself: its workers are traced
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = os.path.join(os.environ["SCOREFIRST_TRACE"], f"rank{rank}")
    _tracer = Tracer(out, os.environ["SCOREFIRST_VAL_TOKENS"], int(os.environ["SCOREFIRST_VOCAB"]), rank, world)
    prov.install(torch)

    orig_backward, orig_grad = torch.autograd.backward, torch.autograd.grad

    def backward(tensors, *a, **kw):
        _backward([tensors] if isinstance(tensors, torch.Tensor) else list(tensors))
        return orig_backward(tensors, *a, **kw)

    def grad(outputs, *a, **kw):
        _backward([outputs] if isinstance(outputs, torch.Tensor) else list(outputs))
        return orig_grad(outputs, *a, **kw)

    torch.autograd.backward, torch.autograd.grad = backward, grad
    observer = _observer(torch)
    observer.__enter__()
    if torch.distributed.is_available():
        _watch_distributed(torch.distributed)
    handles = [register_optimizer_step_pre_hook(lambda opt, args, kwargs: _before_step(opt)),
               register_optimizer_step_post_hook(lambda opt, args, kwargs: _step(opt)),
               torch.nn.modules.module.register_module_forward_pre_hook(_module_forward)]
    sys.stdout = _Stream(sys.stdout, _tracer)
    sys.stderr = _Stream(sys.stderr, _tracer)
    atexit.register(_close)
    _tracer.integrity = Integrity(torch, observer, handles, _watched(torch, type(observer)))


def _watched(torch, observer_type) -> list[tuple[object, str]]:
    """What a script could replace to blind the tracer: the functional entry points it recognises, the autograd
    entry points it wrapped, its own callbacks and methods."""
    import torch.nn.functional as F

    me = sys.modules[__name__]
    out = [(F, n) for n in ("embedding", "linear", "cross_entropy", "nll_loss", "log_softmax", "softmax")]
    out += [(torch.autograd, "backward"), (torch.autograd, "grad"), (torch.Tensor, "backward"),
            (observer_type, "__torch_function__")]
    out += [(me, n) for n in ("_embedding", "_contraction", "_normalizer", "_export", "_alias", "_watched_call",
                              "_collective", "_backward", "_before_step", "_step", "_module", "_module_forward",
                              "_close")]
    out += [(Tracer, n) for n, v in vars(Tracer).items() if callable(v) and not n.startswith("__")]
    return out


def _watch_distributed(dist) -> None:
    """Joining a process group is a META "process-group" event (ranks that never join one ran alone); each
    collective bumps the writer's count (SYNC events, see harness.ledger.merge), after writing the look in
    progress."""
    init = dist.init_process_group

    def init_process_group(*a, **kw):
        out = init(*a, **kw)
        t = _tracer
        if t is not None:
            t.writer.meta(event="process-group", world_size=dist.get_world_size(), backend=str(dist.get_backend()))
        return out

    dist.init_process_group = init_process_group

    def counted(fn):
        def call(*a, **kw):
            t = _tracer
            if t is not None:
                _collective()
                t.writer.collective()
            return fn(*a, **kw)
        call.__name__, call.__doc__, call.__wrapped__ = fn.__name__, fn.__doc__, fn
        return call

    for name in _COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is not None:
            setattr(dist, name, counted(fn))


def _close() -> None:
    global _tracer
    t, _tracer = _tracer, None
    if t is not None:
        t.close()
