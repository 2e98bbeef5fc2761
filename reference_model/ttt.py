"""Legal test-time training (spec 7.a, 7.b): every target is scored before any update that read it.

* ``eval_score_first``: chunked full-model TTT of [L23]. Sliding windows are grouped into chunks of
  ``chunk_tokens`` targets by their first scored target; chunk k is scored under no_grad with the state trained on
  chunks < k, then (unless it is the last) SGD trains ``epochs`` passes over chunk k's own, already scored tokens,
  with a cosine learning rate across chunks.
* ``eval_lora``: per-document batched LoRA TTT of [LORA]. Each document (BOS to the next BOS inclusive) is cut into
  chunks; chunk c is scored by adapters trained on chunks < c of the same document only, then one Adam step trains
  on it unless it is the document's last. Adapters and Adam state are reset for every batch of documents.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import Config
from .errors import InputError
from .evaluate import Windows, begin, device_val, finish, score_windows, token_nll, truncate
from .model import GPT, autocast
from .observe import Tracker
from .progress import Progress

LORA_INIT_SEED = 0


def sgd_step(model: GPT, names: list[str], opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             clip: float, tracker: Tracker, positions: tuple[int, int]) -> None:
    """One observed full-model update on (x, y)."""
    model.train()
    opt.zero_grad(set_to_none=True)
    with autocast(x.device):
        loss = getattr(model, "fast_loss", model)(x, y)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    tracker.update(positions, names)


def chunk_windows(windows: Windows, chunk_tokens: int) -> tuple[int, np.ndarray]:
    """(number of chunks K, chunk index of each window by its first scored target)."""
    total = int(windows.ws[-1] + windows.wlen[-1])
    n_chunks = math.ceil(total / chunk_tokens)
    first = windows.ws + windows.first
    return n_chunks, np.minimum(first // chunk_tokens, n_chunks - 1)


def score_first_pass(model: GPT, val: torch.Tensor, cfg: Config, tracker: Tracker, progress: bool) -> None:
    e, t = cfg.eval, cfg.ttt
    if t.chunk_tokens % e.stride or t.chunk_tokens < e.seq_len:
        raise InputError("ttt.chunk_tokens must be a multiple of the stride and at least one eval sequence")
    windows = Windows(val.numel() - 1, e.seq_len, e.stride)
    n_chunks, chunk_of = chunk_windows(windows, t.chunk_tokens)
    bounds = np.searchsorted(chunk_of, np.arange(n_chunks + 1))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=t.lr, momentum=t.momentum)
    n_seq, L = t.chunk_tokens // e.seq_len, e.seq_len
    with Progress(n_chunks, "score-first ttt", "chunks", enabled=progress) as bar:
        for k in range(n_chunks):
            score_windows(model, val, windows, int(bounds[k]), int(bounds[k + 1]), e.batch_seqs, tracker)
            if k < n_chunks - 1:
                for group in opt.param_groups:
                    group["lr"] = t.lr * 0.5 * (1 + math.cos(math.pi * k / (n_chunks - 1)))
                start = k * t.chunk_tokens
                for _ in range(t.epochs):
                    for s in range(0, n_seq, t.batch_seqs):
                        e_ = min(s + t.batch_seqs, n_seq)
                        a, b = start + s * L, start + e_ * L
                        sgd_step(model, names, opt, val[a:b].view(-1, L), val[a + 1 : b + 1].view(-1, L),
                                 t.grad_clip, tracker, (a, b + 1))
            bar.update(1)
    model.eval()


def eval_score_first(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                     keep_nll: bool = False, progress: bool = False) -> dict:
    val = device_val(model, truncate(val_all, cfg.eval.seq_len))
    tracker, t0 = begin(observer, bytes_at, keep_nll, "score-first", True, val.numel(),
                        chunk_tokens=cfg.ttt.chunk_tokens, epochs=cfg.ttt.epochs)
    score_first_pass(model, val, cfg, tracker, progress)
    return finish(tracker, t0, "score-first")


class BatchedLoRA(nn.Module):
    """Independent rank-r adapters for ``slots`` documents: delta(z) = (z A^T) B^T; ``reset`` draws
    A ~ U(+-1/sqrt(in)) and zeroes B, so a fresh adapter leaves the base model exactly unchanged."""

    def __init__(self, slots: int, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(slots, rank, in_features))
        self.B = nn.Parameter(torch.zeros(slots, out_features, rank))

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> None:
        bound = 1 / math.sqrt(self.A.size(-1))
        self.A.uniform_(-bound, bound, generator=generator)
        self.B.zero_()

    def forward(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return (z @ self.A[rows].transpose(1, 2).to(z.dtype)) @ self.B[rows].transpose(1, 2).to(z.dtype)


class DocAdapters(nn.Module):
    """Q and V adapters in every block plus an LM-head adapter; ``rows`` picks the documents in the forward."""

    def __init__(self, model: GPT, slots: int, rank: int, head_rank: int):
        super().__init__()
        c = model.cfg
        kv = c.num_kv_heads * c.head_dim
        self.q = nn.ModuleList(BatchedLoRA(slots, c.model_dim, c.model_dim, rank) for _ in range(c.num_layers))
        self.v = nn.ModuleList(BatchedLoRA(slots, c.model_dim, kv, rank) for _ in range(c.num_layers))
        self.head = BatchedLoRA(slots, c.model_dim, c.vocab_size, head_rank)
        self.rows: torch.Tensor | None = None
        self.generator = torch.Generator()

    def reset(self) -> None:
        """Fresh adapters; the draws come from the adapters' own generator, so evaluations are repeatable."""
        for m in self.modules():
            if isinstance(m, BatchedLoRA):
                m.reset(self.generator)

    def q_delta(self, layer: int, z):
        return self.q[layer](z, self.rows)

    def v_delta(self, layer: int, z):
        return self.v[layer](z, self.rows)

    def head_delta(self, h):
        return self.head(h, self.rows)


@dataclass(frozen=True)
class Doc:
    index: int      # order in the stream
    start: int      # position of its BOS; its tokens are val[start : start + pred_len + 1]
    pred_len: int   # targets, ending with the next document's BOS


def documents(val: np.ndarray, bos_id: int) -> list[Doc]:
    """Documents from BOS to the next BOS inclusive, so every position 1..N-1 belongs to exactly one."""
    starts = np.flatnonzero(val[:-1] == bos_id)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.append(starts[1:], val.size - 1)
    return [Doc(i, int(s), int(e - s)) for i, (s, e) in enumerate(zip(starts, ends)) if e > s]


def n_chunks(doc: Doc, chunk: int) -> int:
    return math.ceil(doc.pred_len / chunk)


def doc_batches(docs: list[Doc], cfg: Config) -> list[list[Doc]]:
    """Documents sorted by chunk count (stable), cut into batches of ``lora_batch_docs``."""
    t = cfg.ttt
    ordered = sorted(docs, key=lambda d: n_chunks(d, t.lora_chunk))
    return [ordered[i : i + t.lora_batch_docs] for i in range(0, len(ordered), t.lora_batch_docs)]


@dataclass
class ChunkOut:
    positions: torch.Tensor        # scored positions, document by document
    nll: torch.Tensor              # their NLL (with grad)
    docs: list[Doc]                # the documents in this forward, in the order of ``positions``
    counts: list[int]              # scored targets per document
    loss: torch.Tensor | None      # sum over trained documents of their mean chunk NLL
    reads: list[tuple[int, int]]   # per trained document, the position range its window read
    trained: list[int]             # indices of the trained documents


def lora_chunk_forward(model: GPT, adapters: DocAdapters, val: torch.Tensor, batch: list[Doc], c: int,
                       cfg: Config) -> ChunkOut:
    """Forward chunk c of every document of ``batch`` that has one, with grad through the adapters; documents
    train on a chunk only if it is not their last."""
    t, dev = cfg.ttt, val.device
    active = [(slot, d) for slot, d in enumerate(batch) if n_chunks(d, t.lora_chunk) > c]
    width = min((c + 1) * t.lora_chunk, t.lora_window)
    x = torch.zeros(len(active), width, dtype=torch.long, device=dev)
    y = torch.zeros_like(x)
    mask = torch.zeros(len(active), width, dtype=torch.bool, device=dev)
    pos = torch.zeros(len(active), width, dtype=torch.long, device=dev)
    spans, trained, train_rows = [], [], []
    for row, (_, d) in enumerate(active):
        end = min((c + 1) * t.lora_chunk, d.pred_len)
        begin_ = max(0, end - t.lora_window)
        n = end - begin_
        x[row, :n] = val[d.start + begin_ : d.start + end]
        y[row, :n] = val[d.start + begin_ + 1 : d.start + end + 1]
        mask[row, c * t.lora_chunk - begin_ : n] = True
        pos[row, :n] = torch.arange(d.start + begin_ + 1, d.start + end + 1, device=dev)
        spans.append(end - c * t.lora_chunk)
        if c < n_chunks(d, t.lora_chunk) - 1:
            trained.append(d)
            train_rows.append(row)
    adapters.rows = torch.tensor([slot for slot, _ in active], device=dev)
    nll = token_nll(model, x, y, adapters)
    loss = None
    if trained:
        per_doc = (nll * mask).sum(1) / mask.sum(1)
        loss = per_doc[train_rows].sum()
    reads = [(d.start + max(0, (c + 1) * t.lora_chunk - t.lora_window), d.start + (c + 1) * t.lora_chunk + 1)
             for d in trained]
    return ChunkOut(pos[mask], nll[mask], [d for _, d in active], spans, loss, reads, [d.index for d in trained])


def make_adapters(model: GPT, cfg: Config) -> DocAdapters:
    t = cfg.ttt
    dev = next(model.parameters()).device
    adapters = DocAdapters(model, t.lora_batch_docs, t.lora_rank, t.lora_head_rank).to(dev)
    adapters.generator = torch.Generator(device=dev).manual_seed(LORA_INIT_SEED)
    return adapters


def make_adam(adapters: DocAdapters, cfg: Config) -> torch.optim.Adam:
    t = cfg.ttt
    return torch.optim.Adam(adapters.parameters(), lr=t.lora_lr, betas=t.lora_betas, eps=t.lora_eps)


def adam_step(loss: torch.Tensor, opt: torch.optim.Optimizer, tracker: Tracker, reads: list[tuple[int, int]],
              trained: list[int]) -> None:
    """One Adam step on the batch; observed as one update per document, since each document's adapter is
    trained only on its own window (Adam is elementwise and the adapters are disjoint)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for index, read in zip(trained, reads):
        tracker.update(read, [f"lora/doc{index}"])


@contextlib.contextmanager
def frozen(model: GPT):
    """Base weights frozen for adapter-only TTT, restored afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def eval_lora(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
              keep_nll: bool = False, progress: bool = False) -> dict:
    """Per-document LoRA TTT over the whole, untruncated validation stream ([LORA] reads every token)."""
    val = device_val(model, val_all)
    docs = documents(val_all, cfg.model.bos_id)
    tracker, t0 = begin(observer, bytes_at, keep_nll, "lora", True, val.numel(), state_scope="per-document",
                        doc_starts=[d.start for d in docs], chunk=cfg.ttt.lora_chunk, window=cfg.ttt.lora_window)
    adapters = make_adapters(model, cfg)
    model.eval()
    with frozen(model), Progress(len(docs), "lora ttt", "docs", enabled=progress) as bar:
        for batch in doc_batches(docs, cfg):
            adapters.reset()
            opt = make_adam(adapters, cfg)
            for c in range(max(n_chunks(d, cfg.ttt.lora_chunk) for d in batch)):
                out = lora_chunk_forward(model, adapters, val, batch, c, cfg)
                tracker.score(out.positions, out.nll)
                if out.loss is not None:
                    adam_step(out.loss, opt, tracker, out.reads, out.trained)
            bar.update(len(batch))
    return finish(tracker, t0, "lora")
