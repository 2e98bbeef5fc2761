"""Shared fixtures: the embedded corpus prepared once per session, a briefly trained tiny model, small configs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from reference_model import config, data, metric, prepare, tokenizer  # noqa: E402
from reference_model.train import Trainer  # noqa: E402

SP1024 = Path(os.environ.get("SCOREFIRST_SP1024", "/work/shared/data/tokenizers/fineweb_1024_bpe.model"))


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """One thread: fast and immune to oversubscription on small shared machines."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default_data(tmp_path_factory):
    """(data_path, tokenizer_path) of the embedded corpus, prepared into a session cache."""
    cache = os.environ.get("SCOREFIRST_TEST_CACHE") or tmp_path_factory.mktemp("cache")
    data_path, tok, _ = prepare.ensure_default_data(Path(cache), progress=False)
    return data_path, tok


@pytest.fixture(scope="session")
def embedded_docs():
    from reference_model import corpus

    return corpus.embedded_documents()


@pytest.fixture(scope="session")
def sp(default_data):
    return tokenizer.load_tokenizer(default_data[1])


@pytest.fixture(scope="session")
def sp1024():
    """The published FineWeb sp1024 model when this machine has it; tests using it skip otherwise."""
    if not SP1024.is_file():
        pytest.skip(f"sp1024 model not present at {SP1024}")
    return tokenizer.load_tokenizer(SP1024)


@pytest.fixture(scope="session")
def val_full(default_data):
    return data.load_validation(default_data[0])


def _prefix_before_bos(val: np.ndarray, n: int, bos: int = 1) -> np.ndarray:
    starts = np.flatnonzero(val[: n + 1] == bos)
    cut = int(starts[starts > 0][-1]) if (starts > 0).any() else n
    return val[:cut]


@pytest.fixture(scope="session")
def prefix_before_bos():
    """The longest prefix of at most ``n`` tokens that ends right before a BOS (spec 9.1)."""
    return _prefix_before_bos


@pytest.fixture(scope="session")
def val_small(val_full):
    return _prefix_before_bos(val_full, 4096)


@pytest.fixture(scope="session")
def bytes_at_full(sp, val_full):
    lut = metric.build_luts(sp, 1024)
    return torch.from_numpy(metric.target_bytes(val_full, lut).astype(np.int64))


@pytest.fixture(scope="session")
def tiny_cfg():
    """The tiny config with TTT chunks small enough for a few-thousand-token validation prefix."""
    return config.tiny().with_overrides(["train.iterations=12", "train.warmdown_iters=4", "train.warmup_steps=0",
                                         "ttt.chunk_tokens=512", "ttt.control_epochs=3"])


@pytest.fixture(scope="session")
def trained(tiny_cfg, default_data):
    """A briefly trained tiny model (non-zero attention and MLP outputs, so probes are meaningful)."""
    trainer = Trainer(tiny_cfg, torch.device("cpu"), 1337)
    result = trainer.run(default_data[0], lambda line: None, progress=False)
    return result.model.eval()


@pytest.fixture
def fresh(trained, tiny_cfg):
    """A copy of the trained model for evaluations that adapt weights."""
    def make():
        from reference_model.model import GPT

        model = GPT(tiny_cfg.model)
        model.load_state_dict(trained.state_dict())
        return model.eval()
    return make
