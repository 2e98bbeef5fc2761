"""The `--dynamic` options `audit` and `gate` share, parsed into `harness.run.DynamicOptions`."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import positive_int
from harness.run import DynamicOptions


def add_dynamic_arguments(parser: argparse.ArgumentParser) -> None:
    """The dynamic-audit options, shared by `audit --dynamic` and `gate --dynamic`."""
    dyn = parser.add_argument_group(
        "dynamic audit", "--dynamic also RUNS each PATH's script, sandboxed (no network, private work dir, limits) "
                         "and traced, on a small dataset in the official layout, then checks C1-C4 on what ran")
    dyn.add_argument("--dynamic", action="store_true", help="run the instrumented (dynamic) audit as well")
    dyn.add_argument("--data-path", metavar="DIR", help="official shards to cut the audit split from "
                                                        "(default: the embedded corpus)")
    dyn.add_argument("--tokenizer-path", metavar="FILE", help="SentencePiece model going with --data-path")
    dyn.add_argument("--val-tokens", type=positive_int, default=65_536, metavar="N",
                     help="validation targets of the audit split: N targets = N+1 tokens (default: 65536)")
    dyn.add_argument("--iterations", type=positive_int, default=20, metavar="N",
                     help="ITERATIONS for the short training run (default: 20)")
    dyn.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                     help="run under torchrun with N processes (1: plain python); per-rank ledgers are merged "
                          "(default: as the README's torchrun command says, capped at the GPUs with --gpu, at 2 "
                          "gloo ranks on the CPU)")
    dyn.add_argument("--gpu", action="store_true", help="let the script see the GPUs (no address-space limit)")
    dyn.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare", "none"],
                     help="isolation (default: bubblewrap, and nothing less; 'unshare' (network only) and 'none' "
                          "only when named)")
    dyn.add_argument("--timeout", type=positive_int, default=900, metavar="S", help="wall-time limit per run")
    dyn.add_argument("--memory-mb", type=positive_int, default=16_384, metavar="MB", help="memory limit per run")
    dyn.add_argument("--disk-mb", type=positive_int, default=4096, metavar="MB",
                     help="size of the run's work directory (a tmpfs when run as root), /tmp and /dev/shm")
    dyn.add_argument("--no-probes", action="store_true", help="skip the C1 future-perturbation probe (a second run)")
    dyn.add_argument("--reported-label", metavar="REGEX",
                     help="which printed val_loss/val_bpb line is the reported score (default: the last one)")
    dyn.add_argument("--ledger-dir", metavar="DIR", help="keep each run's ledger and logs under DIR")


def dynamic_options(args: argparse.Namespace) -> DynamicOptions | None:
    """The typed options of `--dynamic`, or None when it was not given."""
    if not args.dynamic:
        return None
    return DynamicOptions(data_path=Path(args.data_path) if args.data_path else None,
                          tokenizer_path=Path(args.tokenizer_path) if args.tokenizer_path else None,
                          val_tokens=args.val_tokens, iterations=args.iterations, nproc=args.nproc, gpu=args.gpu,
                          sandbox=args.sandbox, timeout=args.timeout, memory_mb=args.memory_mb,
                          disk_mb=args.disk_mb, probes=not args.no_probes, reported_label=args.reported_label,
                          ledger_dir=Path(args.ledger_dir) if args.ledger_dir else None)
