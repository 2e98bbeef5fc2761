"""Provenance for a run directory: versions, git state, hardware, data and code digests (lm-eval/HELM style)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from .data import file_digest

PACKAGE_DIR = Path(__file__).resolve().parent


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_version() -> str:
    return _version("scorefirst") or "0.1.0+source"


def git_state() -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--", str(PACKAGE_DIR))
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def code_digest() -> dict:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return {"sha256": h.hexdigest(), "files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def hardware() -> dict:
    import torch

    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def libraries() -> dict:
    import torch

    from .model import ATTENTION_BACKEND

    return {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "numpy": _version("numpy"), "sentencepiece": _version("sentencepiece"),
            "zstandard": _version("zstandard"), "flash_attn": _version("flash-attn"),
            "attention_backend": ATTENTION_BACKEND,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}


def data_manifest(data_path: Path, tokenizer_path: Path) -> dict:
    shards = sorted(Path(data_path).glob("fineweb_*.bin"))
    prepared = Path(data_path) / "prepared.json"
    return {"data_path": str(data_path), "tokenizer_path": str(tokenizer_path),
            "tokenizer_sha256": file_digest(tokenizer_path),
            "shards": [{"name": s.name, "bytes": s.stat().st_size, "sha256": file_digest(s)} for s in shards],
            "prepared": prepared.read_text() if prepared.is_file() else None}
