"""The run service `audit` and `gate` share: the static audit of each target, then, with `--dynamic`, each target's
script run sandboxed and traced, its dynamic result attached to the target's `AuditResult`.

Nothing here parses arguments: the command line builds `DynamicOptions` (harness/cli/dynamic_args.py) and calls
`audit_and_run`; a failure that ends the run is one `RunError` line. torch is imported only when a dynamic run is
asked for."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from audits.api import Target, audit_targets
from audits.results import AuditResult, EnvSetting


class RunError(Exception):
    """A one-line reason the run cannot go on (exit 2)."""


@dataclass
class DynamicOptions:
    """The `--dynamic` options, the same for every target of a run."""

    data_path: Path | None = None
    tokenizer_path: Path | None = None
    val_tokens: int = 65_536
    iterations: int = 20
    nproc: int | None = None
    gpu: bool = False
    sandbox: str = "auto"
    timeout: int = 900
    memory_mb: int = 16_384
    disk_mb: int = 4096
    probes: bool = True
    reported_label: str | None = None
    ledger_dir: Path | None = None

    def for_script(self, path: Path, env: dict[str, str], target_name: str):
        """The `harness.dynamic.ScriptOptions` of one target: limits per run, its ledger kept under `ledger_dir`."""
        from harness.dynamic import ScriptOptions
        from harness.sandbox import Limits

        keep = None
        if self.ledger_dir:
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", target_name).strip("_") or "target"
            keep = Path(self.ledger_dir) / safe
        ranks = self.nproc or 8  # CPU seconds for every process torchrun may start
        limits = Limits(cpu_seconds=self.timeout * ranks * 2, memory_mb=self.memory_mb, wall_seconds=self.timeout,
                        disk_mb=self.disk_mb)
        return ScriptOptions(path=path, data_path=self.data_path, tokenizer_path=self.tokenizer_path,
                             val_tokens=self.val_tokens, iterations=self.iterations, env=env, nproc=self.nproc,
                             gpu=self.gpu, isolation=self.sandbox, limits=limits, probes=self.probes,
                             reported_label=self.reported_label, keep=keep, progress=True)


def audit_and_run(targets: Sequence[Target], env_settings: Iterable[EnvSetting] = (), jobs: int | None = None,
                  cache=None, dynamic: DynamicOptions | None = None) -> list[AuditResult]:
    """One `AuditResult` per target: the static audit, and the dynamic audit when `dynamic` is given."""
    env_settings = list(env_settings)
    results = audit_targets(targets, env_settings, jobs=jobs, cache_dir=cache)
    if dynamic is not None:
        _run_dynamic(dynamic, targets, results, env_settings)
    return results


def _run_dynamic(opts: DynamicOptions, targets, results, env_settings) -> None:
    try:
        from harness import dynamic
        from harness.sandbox import SandboxUnavailable
        from reference_model.errors import ReferenceError_
    except ImportError as e:
        from reference_model.errors import TORCH_INSTALL

        raise RunError(f"--dynamic needs the torch extra ({TORCH_INSTALL}): {e}") from None
    try:
        dynamic.run_for_results(opts, targets, results, env_settings)
    except (SandboxUnavailable, ReferenceError_, ValueError, OSError, RuntimeError) as e:
        raise RunError(f"dynamic audit: {e}") from None
