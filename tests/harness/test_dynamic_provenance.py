"""Token ids are validation positions by where they were read from, not by their values: a training shard that
holds a verbatim copy of validation text does not make a legal script fail C3, and ids whose origin the tracer
cannot follow are ambiguous (WARN), never a C3 failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import sandbox
from harness.dynamic import ScriptOptions, audit_script
from harness.tracer import TRACER_DIR
from reference_model import data

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamic"
VAL_TARGETS = 1024


@pytest.fixture(scope="module")
def copied_val_data(ref_data, tmp_path_factory):
    """Official layout whose training shard starts with the validation stream (twice), where the fixtures' short
    training run reads its first batches."""
    data_path, tok = ref_data
    val = data.load_validation(data_path)[:4096]
    train = np.concatenate([data.read_shard(p) for p in data.list_shards(data_path, "train")])[:200_000]
    train = np.concatenate([val[: VAL_TARGETS + 1], val[: VAL_TARGETS + 1], train])
    root = tmp_path_factory.mktemp("copied")
    out = data.dataset_dir(root, 1024)
    out.mkdir(parents=True)
    data.write_shard(out / data.shard_name("val", 0), val)
    data.write_shard(out / data.shard_name("train", 0), train)
    tok_out = data.tokenizer_file(root, 1024)
    tok_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tok, tok_out)
    return out, tok_out, val, train


def _audit(name, copied, probes=False):
    out, tok, _, _ = copied
    return audit_script(ScriptOptions(path=FIXTURES / f"{name}.py", data_path=out, tokenizer_path=tok,
                                      val_tokens=VAL_TARGETS, iterations=6, probes=probes, nproc=1))


needs_sandbox = pytest.mark.skipif(not (sandbox.available("bwrap") or sandbox.available("unshare")),
                                   reason=f"no sandbox here ({sandbox.BWRAP_APT})")


@needs_sandbox
def test_training_on_a_verbatim_copy_of_validation_text_is_not_training_on_validation(copied_val_data):
    _, _, val, train = copied_val_data
    assert np.array_equal(train[: VAL_TARGETS + 1], val[: VAL_TARGETS + 1])  # the first training batches are val text
    d = _audit("legal_score_first_ttt", copied_val_data).result.to_dict()
    checks = {c["id"]: c for c in d["checks"]}
    assert d["verdict"]["conditions"] == {"C1": None, "C2": "PASS", "C3": "PASS", "C4": "PASS"}, \
        [(c["id"], c["verdict"], c["message"]) for c in d["checks"]]
    assert "ambiguous-provenance" not in checks
    assert checks["score-before-update"]["verdict"] == "PASS"


@needs_sandbox
def test_ids_of_lost_origin_matching_both_splits_are_ambiguous_not_a_c3_failure(copied_val_data):
    a = _audit("legal_bytes_loader", copied_val_data)
    d = a.result.to_dict()
    checks = {c["id"]: c for c in d["checks"]}
    assert a.sandbox.exit_code == 0, a.sandbox.tail()
    assert checks["score-before-update"]["verdict"] == "PASS"
    amb = checks["ambiguous-provenance"]
    assert amb["verdict"] == "WARN" and amb["condition"] == "C3"
    assert amb["first_violation"]["position"] == 0 and "ambiguous read" in amb["first_violation"]["detail"]
    assert d["verdict"]["conditions"]["C3"] == "WARN" and d["verdict"]["conditions"]["C4"] == "PASS"


@needs_sandbox
def test_training_on_validation_tokens_still_fails_c3_with_the_copy_present(copied_val_data):
    d = _audit("illegal_pre_eval_ttt", copied_val_data).result.to_dict()
    c = next(c for c in d["checks"] if c["id"] == "score-before-update")
    assert c["verdict"] == "FAIL" and c["first_violation"]["position"] == 1
    assert "the leak is worth" in c["message"] and d["leak"]["worth_bpb"] > 0


PROVENANCE_SCRIPT = r'''
import os, sys, numpy as np, torch
import scorefirst_provenance as prov
prov.install(torch)
from torch.overrides import TorchFunctionMode
class M(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inplace = prov.writes_in_place(getattr(func, "__name__", ""))
        prov.propagate(torch, inplace, args, kwargs, out)
        return out
M().__enter__()
d = sys.argv[1]
def shard(split):
    p = os.path.join(d, f"fineweb_{split}_000000.bin")
    h = np.fromfile(p, dtype="<i4", count=256)
    return np.fromfile(p, dtype="<u2", count=int(h[2]), offset=1024).astype(np.int64)
val, train = shard("val"), shard("train")
v = torch.from_numpy(np.concatenate([val[:10], val[10:20]]))
t = torch.from_numpy(train[5:50])
x = torch.zeros(2, 8, dtype=torch.long)
x[0] = v[2:10]
both = torch.cat([v[:4], t[:4]])
mm = np.memmap(os.path.join(d, "fineweb_val_000000.bin"), dtype="<u2", mode="r", offset=1024)
out = {"val": prov.tensor_bits(v[3:9].to(torch.int32).view(2, 3)), "train": prov.tensor_bits(t.reshape(-1, 5)[1]),
       "setitem": prov.tensor_bits(x), "cat": prov.tensor_bits(both), "memmap": prov.tensor_bits(torch.as_tensor(mm[4:9])),
       "floats": prov.tensor_bits(v.float()), "list": prov.tensor_bits(torch.tensor(val[:5].tolist()))}
print(out)
'''


def test_marks_follow_ids_through_numpy_and_torch(copied_val_data, tmp_path):
    """Read from fineweb_val_* -> VAL (1), fineweb_train_* -> TRAIN (2), through astype, concatenate, from_numpy,
    slicing, .to(), view, in-place writes, cat and memmaps; floats are not ids, and a Python list loses the mark."""
    pytest.importorskip("torch")
    out_dir = copied_val_data[0]
    env = {**os.environ, "PYTHONPATH": str(TRACER_DIR)}
    res = subprocess.run([sys.executable, "-c", PROVENANCE_SCRIPT, str(out_dir)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str({"val": 1, "train": 2, "setitem": 1, "cat": 3, "memmap": 1, "floats": 0,
                                      "list": 0})
