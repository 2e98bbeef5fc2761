"""The official shard format and directory layout (spec 1.1-1.5), read and written with numpy only.

A shard is a 1,024-byte header of 256 little-endian int32 (magic 20240520, version 1, token count, zeros) followed
by that many little-endian uint16 tokens; the file size must match exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .errors import InputError, MissingPathError, ShardFormatError

MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256
HEADER_BYTES = HEADER_INTS * 4
SHARD_SIZE = 10**8


def dataset_dir(root: Path, vocab_size: int) -> Path:
    return Path(root) / "datasets" / f"fineweb10B_sp{vocab_size}"


def tokenizer_file(root: Path, vocab_size: int) -> Path:
    return Path(root) / "tokenizers" / f"fineweb_{vocab_size}_bpe.model"


def shard_name(split: str, index: int) -> str:
    return f"fineweb_{split}_{index:06d}.bin"


def write_shard(path: Path, tokens: np.ndarray) -> None:
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise InputError(f"{path.name}: token ids must lie in [0, 65536)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    tmp.replace(path)


def read_shard(path: Path) -> np.ndarray:
    """Validate and read one shard; every malformed case raises ShardFormatError with the file name."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"shard not found: {path}")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardFormatError(f"{path}: truncated header ({size} bytes, need {HEADER_BYTES})")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != MAGIC:
        raise ShardFormatError(f"{path}: wrong magic {int(header[0])} (expected {MAGIC})")
    if int(header[1]) != VERSION:
        raise ShardFormatError(f"{path}: unsupported version {int(header[1])} (expected {VERSION})")
    count = int(header[2])
    if count < 0 or size != HEADER_BYTES + 2 * count:
        raise ShardFormatError(f"{path}: header says {count} tokens but the file holds "
                               f"{(size - HEADER_BYTES) / 2:g} (truncated or corrupt)")
    return np.fromfile(path, dtype="<u2", count=count, offset=HEADER_BYTES)


def list_shards(data_path: Path, split: str) -> list[Path]:
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise MissingPathError(f"data path is not a folder: {data_path}")
    files = sorted(data_path.glob(f"fineweb_{split}_*.bin"))
    if not files:
        raise MissingPathError(f"no fineweb_{split}_*.bin shards in {data_path}")
    return files


def load_validation(data_path: Path, seq_len: int | None = None) -> np.ndarray:
    """All val shards in order; with ``seq_len``, truncated to floor((N-1)/L)*L + 1 tokens as the official loader."""
    tokens = np.concatenate([read_shard(p) for p in list_shards(data_path, "val")])
    if seq_len is None:
        return tokens
    usable = (tokens.size - 1) // seq_len * seq_len
    if usable <= 0:
        raise InputError(f"validation split has {tokens.size} tokens, fewer than one sequence of {seq_len} + 1")
    return tokens[: usable + 1]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TokenStream:
    """Sequential, wrapping stream over the sorted train shards (no shuffling, documents ignored)."""

    def __init__(self, files: list[Path]):
        self.files, self.index, self.pos = list(files), 0, 0
        self.tokens = read_shard(self.files[0])

    def take(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if self.pos >= self.tokens.size:
                self.index = (self.index + 1) % len(self.files)
                self.tokens, self.pos = read_shard(self.files[self.index]), 0
                continue
            part = self.tokens[self.pos : self.pos + n]
            parts.append(part)
            self.pos += part.size
            n -= part.size
        return np.concatenate(parts)


class TrainLoader:
    """One micro-step takes (local+1)*W contiguous tokens; rank r keeps its span, split into x and y (spec 1.5)."""

    def __init__(self, data_path: Path, rank: int = 0, world_size: int = 1):
        self.files = list_shards(data_path, "train")
        self.rank, self.world_size = rank, world_size
        self.stream = TokenStream(self.files)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        local, rest = divmod(global_tokens, self.world_size * grad_accum)
        if rest or local % seq_len or local == 0:
            raise InputError(f"batch of {global_tokens} tokens does not split into sequences of {seq_len} "
                             f"over {self.world_size} ranks x {grad_accum} micro-steps")
        chunk = self.stream.take((local + 1) * self.world_size)
        span = chunk[self.rank * (local + 1) : (self.rank + 1) * (local + 1)].astype(np.int64)
        return span[:-1].reshape(-1, seq_len), span[1:].reshape(-1, seq_len)
