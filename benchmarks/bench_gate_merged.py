"""The gate on what the maintainers accepted: every record folder merged into openai/parameter-golf's main.

A gate that blocks accepted submissions gets switched off, so its calibration is measured on them. For every commit on main's
first-parent line that adds a folder under `records/<track>/` (a merge commit of a PR, or a change committed
straight to main), the gate runs as it would have on that PR: base = the commit's first parent, head = the PR's head
(a merge commit's second parent; the gate diffs it against its merge base with the base, so what the maintainer
changed while merging is not the PR's), or the commit itself for a direct commit. Printed per folder: the verdict,
each check's status, and every error and warning; then the figures: verdicts, internal errors, and the blocking and
warning findings grouped by rule and wording (numbers masked), separately for merge commits and direct commits.

Reproduce (a clone of the competition repository with its full history; a bare one works):
    git clone https://github.com/openai/parameter-golf /tmp/pg
    .venv/bin/python benchmarks/bench_gate_merged.py --repo /tmp/pg [--json out.json] [--config FILE]
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.gate.config import ConfigError, GateConfig, load_config  # noqa: E402
from core.competition import record_folder  # noqa: E402
from harness.gate.runner import GateOptions, run_gate  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def record_commits(repo: Path, branch: str) -> list[tuple[str, bool, list[str]]]:
    """(commit, is_merge, folders it adds) for each first-parent commit of `branch` that adds a record folder."""
    out = []
    for line in git(repo, "rev-list", "--first-parent", "--parents", "--reverse", branch).splitlines():
        commit, *parents = line.split()
        if not parents:
            continue
        added = git(repo, "diff", "--name-only", "--diff-filter=A", "--no-renames", parents[0], commit, "--",
                    "records/")
        folders = sorted({f for p in added.splitlines() for f in [record_folder(p)] if f})
        if folders:
            out.append((commit, len(parents) > 1, folders))
    return out


def pattern(text: str) -> str:
    """A finding's wording with numbers, paths and quoted values masked, to count findings of one kind."""
    text = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\b[\w./-]+\.(py|log|txt|json|md)\b", "FILE", text)
    text = re.sub(r"\d[\d,._]*", "N", text)
    return text[:140]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, type=Path, help="a clone of openai/parameter-golf with full history")
    ap.add_argument("--branch", default="main")
    ap.add_argument("--config", help="a gate config file (default: the gate's defaults)")
    ap.add_argument("--json", help="write every folder's result and the figures to this file")
    ap.add_argument("--quiet", action="store_true", help="print only the blocked/error folders and the figures")
    args = ap.parse_args()
    try:
        cfg_factory = (lambda: load_config(args.config)) if args.config else GateConfig
        cfg_factory()
    except ConfigError as e:
        print(f"bench_gate_merged: {e}", file=sys.stderr)
        return 2

    commits = record_commits(args.repo, args.branch)
    rows = []
    t0 = time.perf_counter()
    for commit, is_merge, folders in commits:
        kind = "merge" if is_merge else "direct"
        subject = git(args.repo, "log", "-1", "--format=%s", commit).strip()
        try:
            res = run_gate(GateOptions(repo=args.repo, base=f"{commit}^1", head=f"{commit}^2" if is_merge else commit,
                                       config=cfg_factory(), jobs=1, cache_dir=None))
        except Exception as e:  # an internal error of the gate is exactly what this benchmark is for
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            for folder in folders:
                rows.append({"commit": commit, "kind": kind, "subject": subject, "folder": folder,
                             "verdict": "internal-error", "checks": {}, "findings": [], "error": tb})
            continue
        if res.error:
            for folder in folders:
                rows.append({"commit": commit, "kind": kind, "subject": subject, "folder": folder,
                             "verdict": "error", "checks": {}, "findings": [], "error": res.error})
            continue
        for fr in res.folders:
            if fr.folder not in folders:  # a folder the commit modifies but does not add
                continue
            findings = [{"check": name, "rule": m.rule, "level": m.level, "text": m.text, "location": m.location}
                        for name, c in fr.checks.items() for m in c.messages if m.level in ("error", "warning")]
            rows.append({"commit": commit, "kind": kind, "subject": subject, "folder": fr.folder,
                         "verdict": fr.status.value, "checks": {n: c.status.value for n, c in fr.checks.items()},
                         "findings": findings, "error": None})
    elapsed = time.perf_counter() - t0

    for r in rows:
        if args.quiet and r["verdict"] in ("PASS", "WARN", "SKIP"):
            continue
        checks = " ".join(f"{n}={s}" for n, s in r["checks"].items())
        print(f"\n{r['folder']}  [{r['kind']} {r['commit'][:10]}]  {r['verdict']}  {checks}")
        if r["error"]:
            print(f"  error: {r['error']}")
        for f in r["findings"]:
            print(f"  {f['level']:7} {f['rule']:14} {f['location']}: {f['text'][:300]}")

    figures = {}
    print(f"\n== figures ({len(rows)} folders from {len(commits)} commits, {elapsed:.1f} s) ==")
    for kind in ("merge", "direct", "all"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        verdicts = collections.Counter(r["verdict"] for r in sel)
        errors = collections.Counter((f["rule"], pattern(f["text"])) for r in sel for f in r["findings"]
                                     if f["level"] == "error")
        warnings = collections.Counter((f["rule"], pattern(f["text"])) for r in sel for f in r["findings"]
                                       if f["level"] == "warning")
        figures[kind] = {"folders": len(sel), "verdicts": dict(verdicts),
                         "errors": [[n, rule, p] for (rule, p), n in errors.most_common()],
                         "warnings": [[n, rule, p] for (rule, p), n in warnings.most_common()]}
        internal = verdicts["internal-error"] + verdicts["error"]
        print(f"\n{kind}: {len(sel)} folders: " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
              + f"; internal errors {internal}")
        for (rule, p), n in errors.most_common():
            print(f"  {n:3} x error   {rule}: {p}")
        if kind == "all":
            for (rule, p), n in warnings.most_common():
                print(f"  {n:3} x warning {rule}: {p}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "figures": figures, "seconds": elapsed}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
