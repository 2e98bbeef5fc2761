"""Static-audit accuracy on real Parameter Golf PR folders, audited as a maintainer would.

Each case of the corpus (../shared/corpus: one folder per PR with `manifest.tsv` giving the ruling) is audited with
its folder(s) as the targets of one run, README and run scripts included. Printed per case and in total: caught
(an illegal case FAILs), caught on the ruled rule (an active error finding of a ruled rule id, or of a rule that
refines it, with its lines printed for a person to check), false FAIL on a legal case, WARN on a legal case with its reasons, errors, seconds.

    python benchmarks/bench_accuracy.py [--corpus ../shared/corpus] [--json out.json] [--case PR ...]

The corpus is third-party data and is never copied into the project; without it this script says so and exits 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audits.api import audit_paths  # noqa: E402
from audits.registry import all_rules  # noqa: E402
from audits.types import Severity, Status  # noqa: E402


@dataclass
class CaseResult:
    pr: str
    label: str
    ruled: list[str]
    detectable: bool
    verdict: str = ""
    caught: bool = False
    caught_on_rule: bool = False
    rule_lines: list[str] = field(default_factory=list)  # "file:line snippet" of the ruled rule's active errors
    fail_rules: list[str] = field(default_factory=list)
    warn_reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


REFINES = {r.id: r.refines for r in all_rules() if r.refines}


def ruled_ids(rule: str) -> list[str]:
    """`PG-TTT-002+PG-SLOT-001` -> both ids; descriptive suffixes (`(legal variant)`, `fix`) dropped."""
    return [part.split()[0] for part in rule.split("+") if part.strip()]


def load_manifest(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "manifest.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def audit_case(corpus: Path, row: dict[str, str]) -> CaseResult:
    res = CaseResult(row["pr"], row["label"], ruled_ids(row["rule"]), row["static_detectable"] == "yes")
    base = corpus / row["pr"]
    folders = [base / f for f in row["folders"].split(",") if f and (base / f).is_dir()]
    if not folders:
        res.note = "no folder of this case is in the corpus"
        return res
    t0 = time.perf_counter()
    result = audit_paths(folders, jobs=1)
    res.seconds = time.perf_counter() - t0
    res.verdict = result.overall.value
    res.errors = [fr.error or "" for fr in result.errors]
    active = [f for f in result.findings if f.status is Status.ACTIVE]
    res.fail_rules = sorted({f.rule_id for f in active if f.severity is Severity.ERROR})
    res.warn_reasons = sorted({f"{f.rule_id}: {f.message}" for f in active if f.severity is Severity.WARNING})
    res.caught = res.label == "illegal" and res.verdict == "FAIL"
    on_rule = [f for f in active if f.severity is Severity.ERROR and
               (f.rule_id in res.ruled or REFINES.get(f.rule_id) in res.ruled)]
    res.caught_on_rule = res.label == "illegal" and bool(on_rule)
    res.rule_lines = [f"{f.rule_id} {f.path.rsplit('/', 1)[-1]}:{f.line} {f.snippet[:70]}" for f in on_rule]
    return res


def summarize(results: list[CaseResult]) -> dict[str, object]:
    legal = [r for r in results if r.label == "legal" and not r.note]
    illegal = [r for r in results if r.label == "illegal" and not r.note]
    detectable = [r for r in illegal if r.detectable]
    times = sorted(r.seconds for r in results if not r.note)
    return {
        "cases": len(results),
        "legal": len(legal),
        "legal_pass": sum(r.verdict == "PASS" for r in legal),
        "legal_warn": sum(r.verdict == "WARN" for r in legal),
        "false_fail": sum(r.verdict == "FAIL" for r in legal),
        "illegal": len(illegal),
        "illegal_detectable": len(detectable),
        "caught": sum(r.caught for r in illegal),
        "caught_detectable": sum(r.caught for r in detectable),
        "caught_on_ruled_rule": sum(r.caught_on_rule for r in illegal),
        "caught_on_ruled_rule_detectable": sum(r.caught_on_rule for r in detectable),
        "errors": sum(bool(r.errors) for r in results),
        "not_in_corpus": [r.pr for r in results if r.note],
        "seconds_total": round(sum(times), 1),
        "seconds_median": round(times[len(times) // 2], 2) if times else 0.0,
        "seconds_max": round(times[-1], 2) if times else 0.0,
    }


def run(corpus: Path, only: set[str] | None = None) -> tuple[list[CaseResult], dict[str, object]]:
    rows = [r for r in load_manifest(corpus) if not only or r["pr"] in only]
    results = [audit_case(corpus, r) for r in rows]
    return results, summarize(results)


def print_table(results: list[CaseResult], summary: dict[str, object]) -> None:
    print(f"{'case':>14} {'label':7} {'ruled':24} {'det':3} {'verdict':7} {'caught':6} {'on-rule':7} {'s':>5}  detail")
    for r in results:
        if r.note:
            print(f"{r.pr:>14} {r.label:7} {'+'.join(r.ruled):24} {'y' if r.detectable else 'n':3} {'-':7} "
                  f"{'':6} {'':7} {'':>5}  {r.note}")
            continue
        detail = []
        if r.label == "legal" and r.verdict == "FAIL":
            detail.append("FALSE FAIL: " + ", ".join(r.fail_rules))
        if r.label == "legal" and r.warn_reasons:
            detail.append("WARN: " + " | ".join(w[:110] for w in r.warn_reasons))
        if r.label == "illegal":
            detail.append(("; ".join(r.rule_lines) if r.rule_lines else "ruled rule not found") +
                          (f" [other FAIL: {', '.join(x for x in r.fail_rules if x not in r.ruled)}]"
                           if set(r.fail_rules) - set(r.ruled) else ""))
        if r.errors:
            detail.append("ERROR: " + " | ".join(r.errors))
        print(f"{r.pr:>14} {r.label:7} {'+'.join(r.ruled)[:24]:24} {'y' if r.detectable else 'n':3} {r.verdict:7} "
              f"{'yes' if r.caught else '':6} {'yes' if r.caught_on_rule else '':7} {r.seconds:5.1f}  {' ; '.join(detail)}")
    s = summary
    print()
    print(f"legal: {s['legal']}  PASS {s['legal_pass']}  WARN {s['legal_warn']}  false FAIL {s['false_fail']}")
    print(f"illegal: {s['illegal']} ({s['illegal_detectable']} detectable from the code)  caught {s['caught']} "
          f"(detectable {s['caught_detectable']}/{s['illegal_detectable']})  on the ruled rule {s['caught_on_ruled_rule']} "
          f"(detectable {s['caught_on_ruled_rule_detectable']}/{s['illegal_detectable']})")
    print(f"errors: {s['errors']}  not in corpus: {', '.join(s['not_in_corpus']) or '-'}")
    print(f"time: {s['seconds_total']} s in all, median {s['seconds_median']} s, max {s['seconds_max']} s per case")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    ap.add_argument("--json", type=Path, help="also write the per-case results and totals here")
    ap.add_argument("--case", nargs="*", default=None, help="only these cases (the manifest's pr column)")
    args = ap.parse_args(argv)
    if not (args.corpus / "manifest.tsv").is_file():
        print(f"bench_accuracy: no corpus at {args.corpus} (manifest.tsv missing)", file=sys.stderr)
        return 2
    results, summary = run(args.corpus, set(args.case) if args.case else None)
    print_table(results, summary)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": [asdict(r) for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
