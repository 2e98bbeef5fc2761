"""SentencePiece training with the official sp1024 recipe (spec 1.3), loading, and vocabulary checks."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from core.competition import BOS_ID

from .errors import InputError, MissingPathError, TokenizerMismatchError, require


def train_tokenizer(docs: Iterable[str], model_path: Path, vocab_size: int = 1024) -> None:
    """BPE, byte fallback, nmt_nfkc, no dummy prefix; pad/bos/eos/unk = 0/1/2/3. Writes ``.model`` and ``.vocab``."""
    spm = require("sentencepiece", "training a tokenizer")
    sentences = [d.replace("\x00", " ").strip() for d in docs]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise InputError("no non-empty documents to train a tokenizer on")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, model_type="bpe", vocab_size=vocab_size,
            character_coverage=0.999, byte_fallback=True, split_digits=True, normalization_rule_name="nmt_nfkc",
            add_dummy_prefix=False, hard_vocab_limit=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
            max_sentence_length=1 << 20, num_threads=2, minloglevel=2)
    except RuntimeError as exc:
        raise InputError(f"SentencePiece training failed: {str(exc).splitlines()[0]}") from None
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(model.getvalue())
    sp = load_tokenizer(model_path)
    vocab_lines = [f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}" for i in range(sp.vocab_size())]
    model_path.with_suffix(".vocab").write_text("\n".join(vocab_lines) + "\n", encoding="utf-8")


def load_tokenizer(path: Path):
    spm = require("sentencepiece", "reading the tokenizer")
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"tokenizer not found: {path}")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except (OSError, RuntimeError) as exc:
        raise TokenizerMismatchError(f"{path}: not a SentencePiece model ({exc})") from None
    return sp


def check_vocab(sp, vocab_size: int, path: Path | str = "tokenizer", exact: bool = True) -> None:
    """The tokenizer must have exactly the model's vocabulary (at most, when ``exact`` is off: BPE training
    with hard_vocab_limit=False may stop short), with BOS at id 1 as in the official data."""
    if sp.vocab_size() > vocab_size or (exact and sp.vocab_size() != vocab_size):
        raise TokenizerMismatchError(f"{path}: vocabulary of {sp.vocab_size()} pieces does not match the model's "
                                     f"vocab_size {vocab_size}")
    if sp.bos_id() != BOS_ID:
        raise TokenizerMismatchError(f"{path}: BOS id is {sp.bos_id()}, the official data needs {BOS_ID}")


def check_tokens(max_token: int, sp, path: Path | str) -> None:
    if max_token >= sp.vocab_size():
        raise TokenizerMismatchError(f"{path}: holds token id {max_token} but the tokenizer has only "
                                     f"{sp.vocab_size()} pieces")
