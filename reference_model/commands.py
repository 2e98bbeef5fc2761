"""argparse wiring for ``scorefirst run-reference`` and ``scorefirst prepare-data``.

Imports nothing heavy at module level: torch, numpy and sentencepiece load only when a command runs. Bad input
raises ``errors.ReferenceError_``; the handlers print its one-line message and return its exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError, ReferenceError_

TTT_CHOICES = ["none", "score-first", "lora", "illegal-multi-epoch-last", "illegal-multi-epoch-min",
               "illegal-pre-eval-ttt", "illegal-rescore"]
DEFAULT_SEEDS = (1337, 42, 2025)


class _WithDefaults(argparse.HelpFormatter):
    """--help shows each option's default (options whose default is "not given" say in words what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and "%(default)" not in text and \
                action.default not in (None, False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run-reference", help="train and evaluate the reference model for several seeds (needs the torch extra)",
        description="Train the reference model per seed, export the int6 artifact, evaluate it (round trip, "
                    "sliding window, TTT), print each seed's result as it finishes, then a per-seed table with "
                    "both significance tests. Modes named illegal-* are negative controls and are always "
                    "labelled ILLEGAL. Needs the torch extra: pip install torch==2.13.0 'scorefirst[torch]'.",
        formatter_class=_WithDefaults)
    run.add_argument("--seeds", type=int, default=3, help="number of seeds, taken from 1337, 42, 2025, 1, 2, ...")
    run.add_argument("--seed-list", help="comma-separated seeds (overrides --seeds)")
    run.add_argument("--config", default="tiny", choices=["tiny", "record", "baseline"],
                     help="model and training preset: tiny runs on a CPU in minutes; record and baseline are the "
                          "competition's stacks")
    run.add_argument("--ttt", default="score-first", choices=TTT_CHOICES,
                     help="evaluation-time adaptation; illegal-* are labelled negative controls")
    run.add_argument("--out", type=Path, help="run directory (default out/reference/<time>-<config>-<ttt>)")
    run.add_argument("--data-path", type=Path, help="folder with fineweb_{train,val}_*.bin (default: the "
                                                    "embedded corpus, prepared once into the cache)")
    run.add_argument("--tokenizer-path", type=Path, help="SentencePiece .model for --data-path")
    run.add_argument("--cache-dir", type=Path, help="where the embedded corpus is prepared "
                                                    "(default $SCOREFIRST_CACHE_DIR or .scorefirst-cache)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                     help="override a config field, e.g. --set train.iterations=50 (repeatable)")
    run.add_argument("--baseline-bpb", help="comma-separated baseline val_bpb per seed (or one mean) for the "
                                            "significance tests; default: this run's own pre-TTT results")
    run.add_argument("--baseline-name", help="label for --baseline-bpb")
    run.add_argument("--threads", type=int, default=1, help="CPU threads for torch (1 is robust on a shared "
                                                            "2-core machine)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    run.set_defaults(func=run_reference_cmd)

    prep = subparsers.add_parser(
        "prepare-data", help="build a SentencePiece tokenizer and shards in the official layout",
        formatter_class=_WithDefaults,
        description="Write OUT/tokenizers/fineweb_{V}_bpe.model and OUT/datasets/fineweb10B_sp{V}/"
                    "fineweb_{val,train}_NNNNNN.bin from JSONL (one document per line) or text files "
                    "(one document per file), or from the embedded default corpus when no input is given.")
    prep.add_argument("inputs", nargs="*", type=Path, help=".jsonl or text files")
    prep.add_argument("--out", type=Path, required=True, help="data root to write")
    prep.add_argument("--vocab-size", type=int, default=1024, help="SentencePiece vocabulary size")
    prep.add_argument("--tokenizer-path", type=Path, help="use this .model instead of training one")
    prep.add_argument("--text-field", default="text", help="JSONL field holding the document text")
    prep.add_argument("--num-val-docs", type=int, help="documents in the validation split")
    prep.add_argument("--val-tokens", type=int, default=65_536,
                      help="otherwise: whole documents until the validation split holds this many targets "
                           "(N targets = N+1 tokens)")
    prep.add_argument("--seed", type=int, default=1337, help="document shuffle seed")
    prep.add_argument("--shard-size", type=int, default=10**8, help="tokens per shard")
    prep.add_argument("--no-progress", action="store_true")
    prep.set_defaults(func=prepare_data_cmd)


def _guarded(fn):
    def wrapper(args) -> int:
        try:
            return fn(args)
        except ReferenceError_ as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
    wrapper.__name__ = fn.__name__
    return wrapper


def _seeds(args) -> list[int]:
    if args.seed_list:
        try:
            return [int(s) for s in args.seed_list.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"--seed-list must be comma-separated integers, got {args.seed_list!r}") from None
    if args.seeds < 1:
        raise InputError("--seeds must be at least 1")
    return (list(DEFAULT_SEEDS) + list(range(1, args.seeds)))[: args.seeds]


def _floats(text: str | None, flag: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} must be comma-separated numbers, got {text!r}") from None


@_guarded
def run_reference_cmd(args) -> int:
    from .errors import require

    require("torch", "run-reference")
    import torch

    from .config import preset
    from .runner import RunOptions, run_reference

    if args.threads and not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    for p, flag in ((args.data_path, "--data-path"), (args.tokenizer_path, "--tokenizer-path")):
        if p is not None and not p.exists():
            from .errors import MissingPathError

            raise MissingPathError(f"{flag} does not exist: {p}")
    opts = RunOptions(cfg=preset(args.config).with_overrides(args.overrides), seeds=_seeds(args), ttt=args.ttt,
                      out=args.out, data_path=args.data_path, tokenizer_path=args.tokenizer_path,
                      cache_dir=args.cache_dir, baseline_bpb=_floats(args.baseline_bpb, "--baseline-bpb"),
                      baseline_name=args.baseline_name, progress=not args.no_progress, argv=sys.argv[1:])
    results = run_reference(opts)
    if results:
        print(results["table"])
        print(f"run directory: {results['run_dir']}")
    return 0


@_guarded
def prepare_data_cmd(args) -> int:
    from . import corpus
    from .prepare import prepare

    docs = list(corpus.read_documents(args.inputs, args.text_field)) if args.inputs else corpus.embedded_documents()
    summary = prepare(docs, args.out, args.vocab_size, args.tokenizer_path, args.num_val_docs, args.val_tokens,
                      args.seed, args.shard_size, progress=not args.no_progress)
    print(f"wrote {summary['val_tokens']} validation tokens ({summary['val_documents']} documents) and "
          f"{summary['train_tokens']} training tokens to {summary['data_path']}")
    dd = summary.get("dedup")
    if dd:
        print(f"removed {dd['train_tokens_removed']} training tokens in {dd['spans_removed']} spans "
              f"({dd['documents_touched']} documents) covered by {dd['span_tokens']}-token windows that also occur in "
              f"the validation split")
    print(f"tokenizer: {summary['tokenizer']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_model")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
