"""Reading submission files as untrusted input: every failure becomes an `InputError` with a one-line reason."""
from __future__ import annotations

import hashlib
import io
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 20_000_000  # far above any real train_gpt.py (the whole artifact is capped at 16 MB)


class InputError(Exception):
    """A file that cannot be audited; `kind` is stable and appears in JSON results."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class SourceFile:
    path: str  # as displayed (relative to the audited folder when there is one)
    text: str
    sha256: str
    # Modules an absolute import would find next to the file: name -> "helper.py" / "helpers/". None for a
    # source with no real folder (only its relative imports are then known to be local).
    local_modules: dict[str, str] | None = None
    # The same-folder modules it imports (and theirs), by module name: audited with it as one program.
    linked: dict[str, "SourceFile"] = field(default_factory=dict)


def read_source(path: Path, display: str) -> SourceFile:
    try:
        if path.is_symlink():
            raise InputError("symlink", f"{display}: is a symbolic link; not followed")
        st = path.stat()
        if not path.is_file():
            raise InputError("not-a-file", f"{display}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise InputError("too-large", f"{display}: {st.st_size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
        data = path.read_bytes()
    except InputError:
        raise
    except PermissionError:
        raise InputError("unreadable", f"{display}: permission denied") from None
    except FileNotFoundError:
        raise InputError("missing", f"{display}: no such file") from None
    except OSError as e:
        raise InputError("unreadable", f"{display}: {e.strerror or e}") from None
    return decode_source(data, display)


def _declared_encoding(data: bytes) -> str:
    """The PEP 263 coding cookie of the first two lines (`# -*- coding: latin-1 -*-`), as Python reads it; UTF-8 when
    there is none or it names no codec Python knows (then the UTF-8 decode reports the bytes that fail)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return "utf-8"
    return "utf-8" if encoding in ("utf-8-sig", "utf-8") else encoding


def decode_source(data: bytes, display: str) -> SourceFile:
    sha = hashlib.sha256(data).hexdigest()
    if b"\x00" in data[:65536]:
        raise InputError("binary", f"{display}: binary file (contains NUL bytes)")
    encoding = _declared_encoding(data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        what = "UTF-8" if encoding == "utf-8" else f"{encoding} (its coding declaration)"
        raise InputError("encoding", f"{display}:{line}: not valid {what} (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    if not text.strip():
        raise InputError("empty", f"{display}: empty file")
    return SourceFile(display, text, sha)


def sibling_modules(path: Path) -> dict[str, str]:
    """What `import NAME` in `path` would load from the file's own folder, read from file names only (nothing
    is opened or imported): `NAME.py` files and package folders (with an `__init__.py` or `*.py` files).
    The file itself is left out (importing itself re-runs counted, audited code)."""
    out: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(path.parent), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        name = e.name
        if name.startswith("."):
            continue
        try:
            if name.endswith(".py") and name[:-3].isidentifier() and name != path.name and not e.is_dir():
                out.setdefault(name[:-3], name)
            elif name.isidentifier() and e.is_dir(follow_symlinks=False) and _has_python(Path(e.path)):
                out.setdefault(name, name + "/")
        except OSError:
            continue
    return out


def _has_python(folder: Path) -> bool:
    try:
        return any(n.endswith(".py") for n in os.listdir(folder))
    except OSError:
        return False


def display_path(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return os.path.normpath(str(path)).replace(os.sep, "/")
