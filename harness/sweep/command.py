"""`scorefirst sweep`: audit every pull request of a clone and write the sweep JSON and the triage site."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

SWEEP_EPILOG = """\
outputs (in --out, default ./sweep-out): sweep.json (schema: harness/schemas/sweep.schema.json) and the
triage site index.html; --sarif FILE adds one SARIF run covering every audited folder.
exit codes:
  0  the sweep finished and its outputs were written (whatever the verdicts: a sweep is a survey)
  2  usage error, a clone that cannot be read, a bad --metadata file or an output that cannot be written;
     a PR that cannot be resolved or audited is recorded in the sweep as an error and does not stop it
Finished PRs are journalled next to the audit cache: an interrupted sweep resumes where it stopped.
"""


def add_parser(sub, positive_int) -> None:
    p = sub.add_parser(
        "sweep", help="audit every pull request of a clone: clusters, lineage, a triage site",
        description="Audit what each pull request (open, closed or merged) adds or modifies under records/ in a "
                    "clone with refs/pull/N/head refs, without checking anything out; group PRs whose findings "
                    "share the same violating code, trace which earlier PR a submission's code comes from, and "
                    "render one triage site.",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, metavar="PATH",
                   help="a clone of the competition repository with pull refs "
                        "(git fetch origin '+refs/pull/*/head:refs/pull/*/head')")
    p.add_argument("--pr", type=positive_int, nargs="+", action="extend", metavar="N",
                   help="only these PRs (default: every refs/pull/N/head of the clone)")
    p.add_argument("--since", metavar="DATE", help="only PRs opened on or after DATE (2026-03-20 or ISO 8601)")
    p.add_argument("--metadata", metavar="FILE",
                   help="a JSON export of the PRs to label results (gh pr list --state all --limit 5000 --json "
                        "number,title,author,state,createdAt,mergedAt,url)")
    p.add_argument("--jobs", type=positive_int, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--out", default="sweep-out", metavar="DIR",
                   help="folder for sweep.json and the site's index.html (default: sweep-out)")
    p.add_argument("--sarif", metavar="FILE", help="also write one SARIF 2.1.0 run for every audited folder")
    p.add_argument("--title", default="Sweep triage", help="title of the site (default: Sweep triage)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the audit cache and the sweep journal (.scorefirst-cache or "
                        "$SCOREFIRST_CACHE_DIR)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from audits.cache import default_cache_dir
    from audits.outputs import write_atomic
    from core.git import GitError
    from harness.cli.common import EXIT_OK, Fatal, from_cwd, last_line, stdout
    from harness.sweep import result
    from harness.sweep.prs import SweepInputError, load_metadata, parse_date
    from harness.sweep.run import Options, run

    try:
        since = parse_date(args.since) if args.since else None
        metadata = load_metadata(Path(args.metadata)) if args.metadata else {}
    except SweepInputError as e:
        raise Fatal(str(e)) from None
    opts = Options(repo=Path(args.repo), prs=args.pr, since=since, jobs=args.jobs, metadata=metadata,
                   cache_dir=None if args.no_cache else default_cache_dir())
    try:
        outcome = run(opts)
    except GitError as e:
        raise Fatal(str(e)) from None
    doc = result.build(opts, outcome)
    out = Path(args.out)
    written = []
    try:
        write_atomic(out / "sweep.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        written.append(out / "sweep.json")
        from reports.sweep_site import render_site

        written.append(render_site(doc, out, title=args.title))
        if args.sarif:
            from audits.outputs import render

            write_atomic(args.sarif, render("sarif", result.audit_results(doc), root=str(opts.repo)))
            written.append(Path(args.sarif))
    except OSError as e:
        raise Fatal(f"cannot write {getattr(e, 'filename', None) or args.out}: {e.strerror or e}") from None
    s = doc["summary"]
    stdout("".join(f"{from_cwd(Path(os.path.abspath(p)))}\n" for p in written))
    v = s["verdicts"]
    last_line(EXIT_OK, f"swept {s['prs']} PRs: {s['audited']} audited ({v['FAIL']} FAIL, {v['WARN']} WARN, "
                        f"{v['PASS']} PASS, {v['INCOMPLETE']} incomplete), {s['no_records']} without records/ "
                        f"changes, {s['errors']} errors; {s['clusters']} clusters of shared violating code; "
                        f"{s['from_journal']} from the journal")
    return EXIT_OK
