"""Fixtures of the dynamic-audit tests: the embedded corpus prepared once per session, a briefly trained tiny
reference model, and small validation prefixes (CPU, one thread, fp32)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from reference_model import config, data, metric, prepare, tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TRACER_SCRIPTS = REPO / "tests" / "fixtures" / "dynamic" / "tracer"


@pytest.fixture(scope="session")
def tracer_module():
    """``tracer_module(name)``: a module of the tracer folder, for tests of its parts."""
    return _tracer_module


def _tracer_module(name: str):
    """A module of the tracer folder (``scorefirst_trace``, ...), imported here for tests of its parts: the tracer's
    modules import one another by bare name, as they do inside a traced script."""
    import importlib

    from harness.tracer import TRACER_DIR

    sys.path.insert(0, str(TRACER_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(TRACER_DIR))


@pytest.fixture(scope="session")
def run_traced():
    """``run_traced(name, work, val, vocab=64)``: the ledger of a tracer fixture script run under the tracer."""
    return _run_traced


def _run_traced(name: str, work: Path, val: np.ndarray, vocab: int = 64):
    """Run ``tests/fixtures/dynamic/tracer/<name>`` under the tracer in ``work`` (no sandbox, CPU, one thread),
    with ``val`` as the validation stream; the ledger of its rank 0."""
    from harness.ledger import Ledger
    from harness.tracer import TRACER_DIR

    np.save(work / "val.npy", val)
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")},
           "PYTHONPATH": str(TRACER_DIR), "SCOREFIRST_TRACE": str(work / "trace"),
           "SCOREFIRST_VAL_TOKENS": str(work / "val.npy"), "SCOREFIRST_VOCAB": str(vocab),
           "SCOREFIRST_REPO": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(TRACER_SCRIPTS / name)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return Ledger(work / "trace" / "rank0")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ref_data(tmp_path_factory):
    """(data_path, tokenizer_path) of the embedded corpus, prepared into a session cache."""
    cache = os.environ.get("SCOREFIRST_TEST_CACHE") or tmp_path_factory.mktemp("cache")
    data_path, tok, _ = prepare.ensure_default_data(Path(cache), progress=False)
    return data_path, tok


@pytest.fixture(scope="session")
def sp(ref_data):
    return tokenizer.load_tokenizer(ref_data[1])


@pytest.fixture(scope="session")
def lut(sp):
    return metric.build_luts(sp, 1024)


@pytest.fixture(scope="session")
def val_full(ref_data):
    return data.load_validation(ref_data[0])


@pytest.fixture(scope="session")
def val_prefix(val_full):
    """1,100 tokens: two documents, two score-first TTT chunks of 512 (after truncation to 1,025 tokens)."""
    return val_full[:1100].copy()


@pytest.fixture(scope="session")
def tiny_cfg():
    return config.tiny().with_overrides(["train.iterations=12", "train.warmdown_iters=4", "train.warmup_steps=0",
                                         "ttt.chunk_tokens=512", "ttt.control_epochs=3"])


@pytest.fixture(scope="session")
def trained_state(tiny_cfg, ref_data):
    from reference_model.train import Trainer

    result = Trainer(tiny_cfg, torch.device("cpu"), 1337).run(ref_data[0], lambda line: None, progress=False)
    return {k: v.clone() for k, v in result.model.state_dict().items()}


@pytest.fixture(scope="session")
def make_model(trained_state, tiny_cfg):
    """A factory of fresh copies of the trained tiny model (evaluations that adapt weights need their own)."""
    from reference_model.model import GPT

    def make():
        model = GPT(tiny_cfg.model)
        model.load_state_dict(trained_state)
        return model.eval()

    return make
