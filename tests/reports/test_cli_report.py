"""`scorefirst report` and `scorefirst audit --html`: exit codes, last lines, files written, re-rendering."""
from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _pages(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_report_renders_audit_and_reference_results(cli, tmp_path):
    out = tmp_path / "site"
    run = cli("report", FIXTURES / "extras.json", FIXTURES / "ref_tiny_score_first",
              FIXTURES / "ref_tiny_illegal_pre_eval" / "results.json", "-o", out)
    assert run.code == 0, run.err
    from audits.registry import catalogue

    rules = len(catalogue())  # one page per catalogue entry
    assert run.last_err_line == (f"scorefirst: exit 0: wrote {5 + rules} pages to {out} (2 submissions, 2 reference "
                                 f"runs, {rules} rules)")
    assert run.out.strip() == str(out / "index.html")
    names = {p.name for p in out.iterdir()}
    assert "index.html" in names and sum(n.startswith("ref-") for n in names) == 2
    assert sum(n.startswith("sub-") for n in names) == 2


def test_rerender_is_byte_identical_and_removes_stale_pages(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / "site"
    out.mkdir()
    (out / "notes.html").write_text("mine")  # not ours: never touched
    assert cli("report", FIXTURES / "extras.json", FIXTURES / "hostile.json", "-o", out).code == 0
    first = _pages(out)
    assert cli("report", FIXTURES / "hostile.json", FIXTURES / "extras.json", "-o", out).code == 0
    assert _pages(out) == first
    assert cli("report", FIXTURES / "hostile.json", "-o", out).code == 0
    now = _pages(out)
    assert sum(n.startswith("sub-") for n in now) == 1 and now["notes.html"] == b"mine"
    assert json.loads(now[".scorefirst-report.json"])["pages"] == sorted(n for n in now if n.endswith(".html")
                                                                        and n != "notes.html")


def test_report_reads_sources_from_source_roots(cli, tmp_path, write, monkeypatch):
    """`audit --json` stores no source: the report reads it back from disk, only where its SHA-256 matches."""
    write("work/sub/train_gpt.py", "import os\nprint(os.getcwd())\n")
    monkeypatch.chdir(tmp_path / "work")
    stored = tmp_path / "r.json"
    assert cli("audit", "sub", "--json", stored, "--no-cache").code == 0
    out = tmp_path / "site"

    def page() -> str:
        return next(p for p in out.iterdir() if p.name.startswith("sub-")).read_text()

    run = cli("report", stored, "-o", out)
    assert run.code == 0 and "source not found" not in run.last_err_line
    assert 'id="L2"' in page() and "getcwd" in page()
    (tmp_path / "moved").mkdir()
    (tmp_path / "work" / "sub").rename(tmp_path / "moved" / "sub")
    run = cli("report", stored, "-o", out)
    assert run.code == 0 and "source not found for 1 file (sub: sub/train_gpt.py)" in run.last_err_line
    assert 'id="L2"' not in page()
    run = cli("report", stored, "-o", out, "--source-root", tmp_path / "moved")
    assert "source not found" not in run.last_err_line and 'id="L2"' in page()
    (tmp_path / "moved" / "sub" / "train_gpt.py").write_text("import os\nprint('changed')\n")
    run = cli("report", stored, "-o", out, "--source-root", tmp_path / "moved")
    assert "source not found" in run.last_err_line and "changed" not in page()


def test_report_errors_are_one_line_exit_2(cli, tmp_path):
    run = cli("report", tmp_path / "missing.json", "-o", tmp_path / "o")
    assert run.code == 2 and run.last_err_line == f"scorefirst: exit 2: {tmp_path / 'missing.json'}: no such file"
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1.0", "target": "x", "files": [{"path": "a.py", "findings": [{}]}]}')
    run = cli("report", bad, "-o", tmp_path / "o")
    assert run.code == 2 and "not a valid audit result" in run.last_err_line
    (tmp_path / "file").write_text("in the way")
    run = cli("report", FIXTURES / "hostile.json", "-o", tmp_path / "file")
    assert run.code == 2 and "cannot write the HTML report" in run.last_err_line
    run = cli("report", FIXTURES / "hostile.json")
    assert run.code == 2 and "-o/--output" in run.last_err_line


def test_audit_html_writes_the_report_with_source_and_log_budgets(cli, tmp_path, write, samples):
    folder = tmp_path / "rec"
    write("rec/train_gpt.py", samples.illegal)
    write("rec/train_seed1.log", "stopping_early: wallclock_cap train_time:599500ms step:9/10\n"
                                 "final_int8_zlib_roundtrip val_loss:2.0 val_bpb:1.2 eval_time:2000ms\n")
    write("rec/submission.json", json.dumps({"name": "Illegal <b>demo</b>", "val_bpb": 1.2345, "bytes_total": 123}))
    out = tmp_path / "html"
    run = cli("audit", folder, "--html", out, "--no-cache")
    assert run.code == 1  # findings: the exit code is the audit's
    index = (out / "index.html").read_text()
    assert "Illegal &lt;b&gt;demo&lt;/b&gt;" in index and "599.5 s" in index and "2.0 s" in index
    page = next(p for p in out.iterdir() if p.name.startswith("sub-")).read_text()
    assert f'<tr id="L{samples.ttt_line}" class="flag sev-error">' in page
    assert 'href="rule-pg-ttt-001.html"' in page and (out / "rule-pg-ttt-001.html").is_file()


def test_audit_html_unwritable_is_exit_2_and_other_outputs_still_written(cli, tmp_path, illegal_file):
    (tmp_path / "file").write_text("in the way")
    js = tmp_path / "r.json"
    run = cli("audit", illegal_file, "--html", tmp_path / "file", "--json", js, "--no-cache")
    assert run.code == 2 and "cannot write the HTML report" in run.last_err_line
    assert js.is_file()


def test_help_lists_report(cli):
    run = cli("report", "--help")
    assert run.code == 0 and "--source-root" in run.out and "RESULTS" in run.out
    run = cli("audit", "--help")
    assert "--html DIR" in run.out
