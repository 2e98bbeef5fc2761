"""Which split token ids came from, by where they were read, not by their values.

Text is shared between the training and validation splits (boilerplate, near-duplicate pages), so a training batch
can hold a window that also occurs in validation; attributing it to validation positions by content would charge a
legal run with training on validation tokens. Provenance follows the ids instead:

* reading a shard marks the result: ``np.fromfile``, ``np.memmap`` and ``np.load`` of a ``fineweb_val_*`` file
  give validation ids, of a ``fineweb_train_*`` file training ids;
* numpy keeps the mark through views, ``astype``, copies, indexing and arithmetic (the arrays are a marked ndarray
  subclass) and through every numpy function that dispatches on its inputs (``concatenate``, ``stack``...);
* ``torch.from_numpy`` / ``as_tensor`` / ``tensor`` / ``asarray`` carry it onto the tensor;
* every torch operation seen by the tracer's ``TorchFunctionMode`` whose output is an integer tensor (slicing,
  indexing, ``.to()``, ``cat``, ``view``...) gives it the union of its tensor inputs' marks, and an in-place write
  (``x[i] = ...``, ``copy_``) gives it to the destination.

What is never seen (bytes read with ``open().read()``, ids rebuilt from Python lists) carries no mark: the tracer
then falls back to content and calls a window that occurs in both splits ambiguous.
"""

from __future__ import annotations

import os

import numpy as np

VAL, TRAIN = 1, 2
ATTR = "_scorefirst_split"
_INT_DTYPES: set = set()


def split_of_path(path) -> int:
    """VAL, TRAIN or 0 from a shard's file name (a path, or an open file's ``name``)."""
    name = getattr(path, "name", path)
    try:
        base = os.path.basename(os.fspath(name))
    except TypeError:
        return 0
    if base.startswith("fineweb_val_"):
        return VAL
    if base.startswith("fineweb_train_"):
        return TRAIN
    return 0


def _bits_in(items) -> int:
    bits = 0
    for x in items:
        if isinstance(x, MarkedArray):
            bits |= x.split_bits
        elif isinstance(x, (list, tuple)):
            bits |= _bits_in(x)
    return bits


class MarkedArray(np.ndarray):
    """An ndarray that remembers which split(s) its values were read from."""

    split_bits = 0

    def __array_finalize__(self, obj):
        self.split_bits = getattr(obj, "split_bits", 0)

    def __array_function__(self, func, types, args, kwargs):
        plain = tuple(np.ndarray if issubclass(t, MarkedArray) else t for t in types)
        out = super().__array_function__(func, plain, args, kwargs)
        bits = _bits_in(args) | _bits_in(kwargs.values())
        return _mark_result(out, bits)


def _mark_result(out, bits):
    if bits and isinstance(out, np.ndarray) and out.dtype.kind in "iub":
        out = out.view(MarkedArray) if not isinstance(out, MarkedArray) else out
        out.split_bits |= bits
    elif bits and isinstance(out, (list, tuple)):
        out = type(out)(_mark_result(o, bits) for o in out)
    return out


def mark_array(arr, bits: int):
    """``arr`` seen as a :class:`MarkedArray` carrying ``bits`` (memmaps stay memmaps and are remembered by id)."""
    if not bits or not isinstance(arr, np.ndarray):
        return arr
    if isinstance(arr, np.memmap):
        _MEMMAPS[id(arr)] = (arr, bits)
        return arr
    out = arr.view(MarkedArray)
    out.split_bits = bits
    return out


_MEMMAPS: dict[int, tuple] = {}   # memmaps of shards, kept alive so their ids stay theirs


def array_bits(a) -> int:
    """The split marks of a numpy array: its own, or those of an array it is a view of."""
    for _ in range(32):
        if a is None:
            return 0
        if isinstance(a, MarkedArray):
            return a.split_bits
        hit = _MEMMAPS.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        a = getattr(a, "base", None)
        if not isinstance(a, np.ndarray):
            return 0
    return 0


def tensor_bits(t) -> int:
    return getattr(t, ATTR, 0)


def mark_tensor(t, bits: int) -> None:
    if bits and t.dtype in _INT_DTYPES:
        try:
            setattr(t, ATTR, getattr(t, ATTR, 0) | bits)
        except Exception:
            pass


def writes_in_place(name: str) -> bool:
    """Whether a torch function of this name writes its first argument (``x[i] = ...``, ``copy_``, ``add_``...)."""
    return name == "__setitem__" or (name.endswith("_") and not name.startswith("__"))


def propagate(torch, inplace: bool, args, kwargs, out) -> None:
    """Give an integer output (and the destination of an in-place write: ``inplace``) the marks of the tensor
    inputs."""
    Tensor = torch.Tensor
    dest = (args[0] if inplace and args and isinstance(args[0], Tensor) and args[0].dtype in _INT_DTYPES
            else None)
    if isinstance(out, Tensor):
        if out.dtype not in _INT_DTYPES and dest is None:
            return
    elif isinstance(out, (tuple, list)):
        if dest is None and not any(isinstance(o, Tensor) and o.dtype in _INT_DTYPES for o in out):
            return
    elif dest is None:
        return
    bits = 0
    for a in args:
        if isinstance(a, Tensor):
            bits |= getattr(a, ATTR, 0)
        elif isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Tensor):
                    bits |= getattr(b, ATTR, 0)
    for v in kwargs.values():
        if isinstance(v, Tensor):
            bits |= getattr(v, ATTR, 0)
    if not bits:
        return
    if isinstance(out, Tensor):
        mark_tensor(out, bits)
    elif isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                mark_tensor(o, bits)
    if dest is not None:
        mark_tensor(dest, bits)


def install(torch) -> None:
    """Mark what shard readers return and carry marks from numpy onto tensors."""
    _INT_DTYPES.update({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.uint16,
                        torch.uint32, torch.uint64} - {None})

    def reader(fn):
        def call(file, *a, **kw):
            out = fn(file, *a, **kw)
            bits = split_of_path(file)
            return mark_array(out, bits) if bits else out
        call.__name__, call.__doc__, call.__wrapped__ = fn.__name__, fn.__doc__, fn
        return call

    np.fromfile = reader(np.fromfile)
    np.load = reader(np.load)
    orig_new = np.memmap.__new__

    def memmap_new(subtype, filename, *a, **kw):
        out = orig_new(subtype, filename, *a, **kw)
        bits = split_of_path(filename)
        if bits:
            _MEMMAPS[id(out)] = (out, bits)
        return out

    np.memmap.__new__ = staticmethod(memmap_new)

    def converter(fn):
        def call(data, *a, **kw):
            out = fn(data, *a, **kw)
            if isinstance(data, np.ndarray) and isinstance(out, torch.Tensor):
                mark_tensor(out, array_bits(data))
            return out
        call.__name__, call.__doc__, call.__wrapped__ = fn.__name__, fn.__doc__, fn
        return call

    for name in ("from_numpy", "as_tensor", "tensor", "asarray"):
        fn = getattr(torch, name, None)
        if fn is not None:
            setattr(torch, name, converter(fn))
