"""prepare-data: documents -> SentencePiece tokenizer + shards in the official layout (spec 1.2).

Documents are shuffled with a fixed seed, the first ones form the validation split (whole documents, so the
validation stream ends right before a BOS) and the rest the training split; each becomes [BOS] + encode(text).

Long spans shared by the two splits are removed from the training split: every training token covered by a
``DEDUP_SPAN``-token window that also occurs in the validation split is dropped (the summary states how many). Text
repeated across documents (licence blocks, shared docstrings) would otherwise put validation text in the training
shards, so that any model trained on them has seen part of what it is scored on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np

from . import corpus, data
from .errors import InputError
from .progress import Progress
from .tokenizer import BOS_ID, check_vocab, load_tokenizer, train_tokenizer

LAYOUT_VERSION = 2  # 2: long train/val overlaps removed from the training split
DEFAULT_VAL_TOKENS = 65_536
DEDUP_SPAN = 16


def prepare(docs: list[str], out_root: Path, vocab_size: int = 1024, tokenizer_path: Path | None = None,
            num_val_docs: int | None = None, val_tokens: int | None = DEFAULT_VAL_TOKENS, seed: int = 1337,
            shard_size: int = data.SHARD_SIZE, progress: bool = True) -> dict:
    """Write ``out_root/tokenizers/fineweb_{V}_bpe.model`` and ``out_root/datasets/fineweb10B_sp{V}/*.bin``."""
    docs = [d for d in docs if d.strip()]
    if len(docs) < 2:
        raise InputError(f"need at least 2 non-empty documents, got {len(docs)}")
    out_root = Path(out_root)
    model_path = data.tokenizer_file(out_root, vocab_size)
    if tokenizer_path is None:
        train_tokenizer(docs, model_path, vocab_size)
    else:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        if Path(tokenizer_path).resolve() != model_path.resolve():
            shutil.copyfile(tokenizer_path, model_path)
    sp = load_tokenizer(model_path)
    check_vocab(sp, vocab_size, model_path, exact=False)

    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    out_dir = data.dataset_dir(out_root, vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("fineweb_*.bin"):
        old.unlink()
    writer = _ShardWriter(out_dir, shard_size)
    split, n_val_docs, n_val_tokens = "val", 0, 0
    val_ids: list[int] = []
    dedup = None
    with Progress(len(order), "prepare-data", "docs", enabled=progress) as bar:
        for i in order:
            ids = [BOS_ID] + sp.encode(docs[i])
            if split == "val" and n_val_docs > 0 and _val_full(n_val_docs, n_val_tokens, num_val_docs, val_tokens):
                split = "train"
                dedup = Dedup(np.asarray(val_ids, dtype=np.int64), DEDUP_SPAN)
            if split == "val":
                n_val_docs, n_val_tokens = n_val_docs + 1, n_val_tokens + len(ids)
                val_ids.extend(ids)
            else:
                ids = dedup.strip(ids)
            if len(ids) > 1:
                writer.add(split, ids)
            bar.update(1)
    writer.flush_all()
    if writer.counts["train"] == 0:
        raise InputError("every document went to the validation split; lower --val-tokens or --num-val-docs")
    summary = {"layout_version": LAYOUT_VERSION, "vocab_size": vocab_size, "pieces": sp.vocab_size(),
               "documents": len(docs),
               "val_documents": n_val_docs, "val_tokens": writer.counts["val"],
               "train_tokens": writer.counts["train"], "seed": seed,
               "dedup": dedup.summary() if dedup else None, "tokenizer": str(model_path),
               "data_path": str(out_dir), "corpus_sha256": corpus.corpus_digest(docs)}
    (out_dir / "prepared.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _gram_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """A 64-bit polynomial hash of every k-token window (wrapping arithmetic)."""
    n = ids.size - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    u = ids.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(1_000_003) + u[j : j + n]
    return h


class Dedup:
    """Drops from training documents every token covered by a ``span``-token window that occurs in validation."""

    def __init__(self, val: np.ndarray, span: int):
        self.span = span
        self.val_hashes = np.unique(_gram_hashes(val, span))
        self.removed = self.spans = self.docs = 0

    def strip(self, ids: list[int]) -> list[int]:
        a = np.asarray(ids, dtype=np.int64)
        h = _gram_hashes(a, self.span)
        if not h.size or not self.val_hashes.size:
            return ids
        j = np.minimum(np.searchsorted(self.val_hashes, h), self.val_hashes.size - 1)
        hit = (self.val_hashes[j] == h).astype(np.int32)
        if not hit.any():
            return ids
        diff = np.zeros(a.size + 1, dtype=np.int32)
        np.add.at(diff, np.flatnonzero(hit), 1)
        np.add.at(diff, np.flatnonzero(hit) + self.span, -1)
        cover = np.cumsum(diff[:-1]) > 0
        cover[0] = False  # the document's BOS stays
        self.removed += int(cover.sum())
        self.spans += int(np.count_nonzero(np.diff(np.concatenate([[0], cover.astype(np.int8)])) == 1))
        self.docs += 1
        return a[~cover].tolist()

    def summary(self) -> dict:
        return {"span_tokens": self.span, "train_tokens_removed": self.removed, "spans_removed": self.spans,
                "documents_touched": self.docs}


def _val_full(n_docs: int, n_tokens: int, num_val_docs: int | None, val_tokens: int | None) -> bool:
    if num_val_docs is not None:
        return n_docs >= num_val_docs
    return n_tokens >= (val_tokens or DEFAULT_VAL_TOKENS) + 1  # N targets need N+1 tokens


class _ShardWriter:
    """Fills shards of ``shard_size`` tokens in order and flushes when full or when the split changes."""

    def __init__(self, out_dir: Path, shard_size: int):
        self.out_dir, self.shard_size = out_dir, shard_size
        self.buffers: dict[str, list[int]] = {"val": [], "train": []}
        self.index = {"val": 0, "train": 0}
        self.counts = {"val": 0, "train": 0}
        self.current = "val"

    def add(self, split: str, ids: list[int]) -> None:
        if split != self.current:
            self._flush(self.current)
            self.current = split
        buf = self.buffers[split]
        buf.extend(ids)
        self.counts[split] += len(ids)
        while len(buf) >= self.shard_size:
            self._write(split, buf[: self.shard_size])
            del buf[: self.shard_size]

    def flush_all(self) -> None:
        for split in ("val", "train"):
            self._flush(split)

    def _flush(self, split: str) -> None:
        if self.buffers[split]:
            self._write(split, self.buffers[split])
            self.buffers[split] = []

    def _write(self, split: str, ids: list[int]) -> None:
        data.write_shard(self.out_dir / data.shard_name(split, self.index[split]), np.asarray(ids, dtype=np.int64))
        self.index[split] += 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCOREFIRST_CACHE_DIR", ".scorefirst-cache"))


def ensure_default_data(cache_dir: Path | None = None, vocab_size: int = 1024,
                        tokenizer_path: Path | None = None, progress: bool = True) -> tuple[Path, Path, dict]:
    """Prepare (once, cached by content) the embedded corpus; returns (data_path, tokenizer_path, summary)."""
    docs = corpus.embedded_documents()
    key = hashlib.sha256(json.dumps([LAYOUT_VERSION, vocab_size, corpus.corpus_digest(docs),
                                     data.file_digest(tokenizer_path) if tokenizer_path else None]).encode())
    root = Path(cache_dir or default_cache_dir()) / "reference-data" / key.hexdigest()[:16]
    marker = data.dataset_dir(root, vocab_size) / "prepared.json"
    if not marker.is_file():
        prepare(docs, root, vocab_size, tokenizer_path=tokenizer_path, progress=progress)
    summary = json.loads(marker.read_text())
    return data.dataset_dir(root, vocab_size), data.tokenizer_file(root, vocab_size), summary
