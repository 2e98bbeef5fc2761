"""Shard format, layout, loaders and prepare-data."""

import json

import numpy as np
import pytest

from reference_model import data, prepare
from reference_model.errors import InputError, MissingPathError, ShardFormatError


def test_shard_round_trip_and_exact_header(tmp_path):
    tokens = np.array([1, 5, 1023, 65535, 0], dtype=np.int64)
    path = tmp_path / data.shard_name("val", 0)
    data.write_shard(path, tokens)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 5] and not header[3:].any()
    assert len(raw) == 1024 + 2 * 5
    assert data.read_shard(path).tolist() == tokens.tolist()
    assert path.name == "fineweb_val_000000.bin"


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:1000], "truncated header"),
    (lambda b: b[:-2], "truncated or corrupt"),
    (lambda b: b + b"\0\0", "truncated or corrupt"),
    (lambda b: np.int32(1234).tobytes() + b[4:], "wrong magic"),
    (lambda b: b[:4] + np.int32(2).tobytes() + b[8:], "unsupported version"),
])
def test_bad_shards_raise_one_line_errors(tmp_path, damage, message):
    path = tmp_path / "fineweb_train_000000.bin"
    data.write_shard(path, np.arange(10))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ShardFormatError, match=message) as err:
        data.read_shard(path)
    assert "\n" not in str(err.value) and err.value.exit_code == 4


def test_missing_paths(tmp_path):
    with pytest.raises(MissingPathError):
        data.read_shard(tmp_path / "nope.bin")
    with pytest.raises(MissingPathError):
        data.list_shards(tmp_path / "nope", "val")
    with pytest.raises(MissingPathError, match="no fineweb_val"):
        data.list_shards(tmp_path, "val")


def test_validation_truncation_matches_official_rule(tmp_path):
    data.write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(100) % 7)
    data.write_shard(tmp_path / "fineweb_val_000001.bin", np.arange(50) % 7)
    assert data.load_validation(tmp_path).size == 150
    assert data.load_validation(tmp_path, seq_len=16).size == (149 // 16) * 16 + 1


def test_train_loader_wraps_and_splits_ranks(tmp_path):
    data.write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(40))
    data.write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(40, 60))
    loader = data.TrainLoader(tmp_path, rank=1, world_size=2)
    x, y = loader.next_batch(global_tokens=16, seq_len=4, grad_accum=2)
    # local = 16 / (2 * 2) = 4 tokens; the chunk is (4 + 1) * 2 = 10 tokens; rank 1 keeps tokens 5..9
    assert x.tolist() == [[5, 6, 7, 8]] and y.tolist() == [[6, 7, 8, 9]]
    for _ in range(5):
        x, y = loader.next_batch(16, 4, 2)
    assert (y[:, :-1] == x[:, 1:]).all()
    stream = data.TokenStream(data.list_shards(tmp_path, "train"))
    assert stream.take(70).tolist() == list(range(60)) + list(range(10))
    with pytest.raises(InputError):
        loader.next_batch(global_tokens=18, seq_len=4, grad_accum=2)


def test_prepare_writes_official_layout(tmp_path, sp, default_data):
    docs = [f"Document number {i}. " + "The quick brown fox jumps over the lazy dog. " * (3 + i % 5)
            for i in range(40)]
    summary = prepare.prepare(docs, tmp_path, tokenizer_path=default_data[1], val_tokens=300, progress=False)
    ds = tmp_path / "datasets" / "fineweb10B_sp1024"
    assert (tmp_path / "tokenizers" / "fineweb_1024_bpe.model").is_file()
    val, train = data.load_validation(ds), data.read_shard(ds / "fineweb_train_000000.bin")
    assert val[0] == 1 and train[0] == 1, "every document starts with BOS"
    assert summary["val_tokens"] == val.size >= 300 and summary["train_tokens"] == train.size
    assert (val == 1).sum() == summary["val_documents"]
    decoded = sp.decode([int(t) for t in val[1:np.flatnonzero(val == 1)[1]]])
    assert decoded in [d.strip() for d in docs]
    assert json.loads((ds / "prepared.json").read_text())["documents"] == 40


def test_prepare_splits_into_shards_and_trains_tokenizer(tmp_path):
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    docs = [" ".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(200)) for _ in range(60)]
    summary = prepare.prepare(docs, tmp_path, vocab_size=320, num_val_docs=5, shard_size=3000, progress=False)
    ds = tmp_path / "datasets" / "fineweb10B_sp320"
    assert summary["val_documents"] == 5
    assert len(list(ds.glob("fineweb_train_*.bin"))) >= 2
    total = sum(data.read_shard(p).size for p in ds.glob("fineweb_train_*.bin"))
    assert total == summary["train_tokens"]


def test_prepare_rejects_bad_input(tmp_path):
    with pytest.raises(InputError):
        prepare.prepare(["only one"], tmp_path, progress=False)
    with pytest.raises(InputError, match="SentencePiece training failed"):
        prepare.prepare(["some text here", "and more text"], tmp_path, vocab_size=64, progress=False)


def test_embedded_default_is_deterministic(default_data, embedded_docs):
    from reference_model import corpus

    docs = corpus.embedded_documents()
    assert len(docs) > 100 and corpus.corpus_digest(docs) == corpus.corpus_digest(embedded_docs)
    summary = json.loads((default_data[0] / "prepared.json").read_text())
    assert summary["corpus_sha256"] == corpus.corpus_digest(docs)
    assert 65_536 <= summary["val_tokens"] < 80_000


def _shared(a, b, k):
    """How many k-token windows of a also occur in b (by 64-bit window hash)."""
    return int(np.isin(prepare._gram_hashes(a.astype(np.int64), k), prepare._gram_hashes(b.astype(np.int64), k)).sum())


def test_prepare_removes_long_validation_spans_from_training(tmp_path, default_data):
    """A training document that quotes a validation document keeps its own text and loses the quote; the summary
    says how much was removed."""
    rng = np.random.default_rng(0)
    words = ["river", "stone", "cloud", "amber", "violet", "copper", "meadow", "harbor", "lantern", "orchard"]
    docs = [" ".join(rng.choice(words) + str(rng.integers(0, 999)) for _ in range(120)) for _ in range(30)]
    summary = prepare.prepare(docs, tmp_path, tokenizer_path=default_data[1], num_val_docs=1, progress=False)
    ds = tmp_path / "datasets" / "fineweb10B_sp1024"
    val = data.load_validation(ds)
    assert summary["dedup"]["train_tokens_removed"] == 0  # unrelated documents: nothing shared
    val_text = [d for d in docs if d.strip()]
    quoted = docs + ["Quoted: " + d + " End of quote." for d in val_text]  # every document quoted once
    out = tmp_path / "quoted"
    summary = prepare.prepare(quoted, out, tokenizer_path=default_data[1], num_val_docs=1, progress=False)
    ds = out / "datasets" / "fineweb10B_sp1024"
    val, train = data.load_validation(ds), data.read_shard(ds / "fineweb_train_000000.bin")
    dd = summary["dedup"]
    assert dd["span_tokens"] == prepare.DEDUP_SPAN and dd["train_tokens_removed"] >= val.size - prepare.DEDUP_SPAN
    assert dd["spans_removed"] >= 1 and dd["documents_touched"] >= 1
    assert _shared(val, train, 32) == 0, "no 32-token window of validation is left in training"
    assert summary["train_tokens"] == train.size


def test_embedded_corpus_has_no_long_span_in_both_splits(default_data):
    ds = default_data[0]
    val = data.load_validation(ds)
    train = np.concatenate([data.read_shard(p) for p in data.list_shards(ds, "train")])
    summary = json.loads((ds / "prepared.json").read_text())
    assert summary["dedup"]["train_tokens_removed"] > 0
    assert _shared(val, train, 32) == 0
