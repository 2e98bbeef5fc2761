"""The format check: required files, submission.json against its schema (located messages), track, symlinks."""
from __future__ import annotations

import json
import os

import pytest

from harness.gate.model import Status


def fmt_of(r):
    (f,) = r.folders
    return f.checks["format"]


def by_key(check, prefix):
    return [m for m in check.messages if m.key.startswith(prefix)]


@pytest.mark.parametrize("missing", ["README.md", "submission.json", "train_gpt.py"])
def test_missing_required_file(repo, make, run_gate, missing):
    sub = make(omit=(missing,))
    repo.pr(sub)
    r = run_gate(repo)
    (m,) = by_key(fmt_of(r), f"missing:{missing}")
    assert m.level == "error" and m.path == f"{sub.folder}/{missing}"
    assert m.text.startswith(f"missing {missing}: a record folder holds README.md, submission.json, train_gpt.py")
    assert r.exit_code() == 1
    legality = r.folders[0].checks["legality"]
    assert legality.status is (Status.SKIP if missing == "train_gpt.py" else Status.PASS)


def test_missing_logs(repo, make, run_gate):
    sub = make(runs=[])
    repo.pr(sub)
    r = run_gate(repo)
    (m,) = by_key(fmt_of(r), "missing:log")
    assert m.path == sub.folder and "no train log" in m.text
    assert r.folders[0].checks["significance"].status is Status.FAIL


def test_invalid_json_is_located(repo, make, run_gate):
    text = '{\n  "author": "A",\n  "val_bpb": 1.1,\n}\n'
    sub = make(raw_json=text)
    repo.pr(sub)
    r = run_gate(repo)
    (m,) = by_key(fmt_of(r), "json")
    assert (m.path, m.line, m.column) == (f"{sub.folder}/submission.json", 4, 1)
    assert m.text.startswith("submission.json: invalid JSON: Expecting property name enclosed in double quotes")
    assert m.location == f"{sub.folder}/submission.json:4:1"
    # the folder is still checked otherwise; the audit's own submission.json error is not an audit failure
    assert r.folders[0].checks["legality"].status is Status.PASS


def test_schema_errors_are_located_at_the_value(repo, make, run_gate):
    sub = make(meta={"val_bpb": "1.1197", "github_id": "@someone", "seeds": [1337, 42, 42], "bytes_code": 1.5,
                     "author": None})
    sub.runs = sub.runs  # seeds field is overridden; logs still exist for 1337, 42, 2025
    repo.pr(sub)
    r = run_gate(repo, strict_schema_since="2026-03-01")  # the fixture's 2026-03-25 held to the current template
    fmt = fmt_of(r)
    text = sub.files()[f"{sub.folder}/submission.json"].splitlines()
    msgs = {m.key: m for m in fmt.messages}

    def pos(needle):
        for i, line in enumerate(text, 1):
            if needle in line:
                return i, line.index(needle) + 1
        raise AssertionError(needle)

    m = msgs["schema:type:/val_bpb"]
    assert (m.line, m.column) == pos('"1.1197"')
    assert m.text == 'submission.json /val_bpb: expected a number, got a string ("1.1197")'
    m = msgs["schema:pattern:/github_id"]
    assert (m.line, m.column) == pos('"@someone"') and "A GitHub user name" in m.text
    m = msgs["schema:uniqueItems:/seeds/2"]
    assert m.line == pos('"seeds"')[0] + 3 and "repeats 42" in m.text
    m = msgs["schema:type:/bytes_code"]
    assert "expected an integer, got a number (1.5)" in m.text
    m = msgs["schema:required:"]
    assert (m.line, m.column) == (1, 1) and m.text == 'submission.json (top level): missing required field "author"'
    assert fmt.status is Status.FAIL


def test_launch_era_template_problems_are_warnings(repo, make, run_gate):
    """Merged records dated before the current template lack its fields; a person looks, nothing blocks."""
    sub = make(meta={"author": "", "track": "non-record-16mb"})
    files = sub.files()
    path = f"{sub.folder}/submission.json"
    meta = json.loads(files[path])
    for k in ("blurb", "bytes_code"):
        del meta[k]
    files[path] = json.dumps(meta, indent=2) + "\n"
    repo.pr(files=files)
    fmt = fmt_of(run_gate(repo))
    msgs = {m.key: m for m in fmt.messages if m.level != "note"}
    assert {m.level for m in msgs.values()} == {"warning"} and fmt.status is Status.WARN
    assert msgs["schema:required:"].text.startswith('submission.json lacks the current template\'s "blurb", '
                                                    '"bytes_code" (launch-era template: dated 2026-03-25, before '
                                                    '2026-05-02')
    assert "must not be empty" in msgs["schema:minLength:/author"].text
    strict = fmt_of(run_gate(repo, strict_schema_since="2026-03-25"))
    assert strict.status is Status.FAIL
    assert {m.key for m in strict.messages if m.level == "error"} >= {"schema:required:", "schema:minLength:/author",
                                                                       "track-mismatch"}


def test_non_object_bom_and_bad_utf8(repo, make, run_gate):
    for raw, want in (("[1, 2]\n", "expected a JSON object, got an array"),
                      ("\ufeff{}\n", "starts with a byte-order mark")):
        sub = make(raw_json=raw)
        repo.pr(sub)
        (m,) = by_key(fmt_of(run_gate(repo)), "json")
        assert want in m.text and m.line == 1
    sub = make()
    files = sub.files()
    files[f"{sub.folder}/submission.json"] = b'{\n "author": "\xff"\n}\n'
    repo.pr(files=files)
    (m,) = by_key(fmt_of(run_gate(repo)), "json")
    assert m.line == 2 and "not valid UTF-8 (byte 0xff" in m.text


def test_hostile_submission_json_is_a_located_format_fail(repo, make, gate_cli):
    """Built to break the parser or to slip a non-number score through: a located format FAIL, never exit 2."""
    cases = (
        # the 65th level (the object is the 1st), on line 3 after `  "blurb": `
        ('{\n  "name": "x",\n  "blurb": ' + "[" * 200_000 + "]" * 200_000 + "\n}\n", 3, 12 + 63,
         "nests deeper than 64 levels"),
        ('{\n  "bytes_total": ' + "9" * 5_000 + "\n}\n", 2, 18, "a number of 5,000 characters"),
        ('{\n  "name": "x",\n  "val_bpb": NaN\n}\n', 3, 14, "NaN is not a JSON number"),
        ('{\n  "val_bpb": -Infinity,\n  "val_loss": 2.0\n}\n', 2, 14, "-Infinity is not a JSON number"),
        ('{"blurb": "' + "x" * 1_000_001 + '"}\n', 1, 1, "a submission.json is at most 1,000,000"),
    )
    for raw, line, col, want in cases:
        sub = make(raw_json=raw)
        repo.pr(sub)
        r = gate_cli("--repo", repo.path, "--base", "main", "--head", "pr", "--format", "json")
        assert r.code == 1, r.err
        folder = json.loads(r.out)["folders"][0]
        (m,) = [m for m in folder["checks"]["format"]["messages"] if m["rule"] == "PG-FMT" and
                m["path"].endswith("submission.json") and m["level"] == "error"]
        assert want in m["text"] and (m["line"], m["column"]) == (line, col), (want, m)


def test_duplicate_keys(repo, make, run_gate):
    sub = make()
    data = sub.submission_json()
    text = json.dumps(data, indent=2).replace('"blurb"', '"val_bpb": 0.5,\n  "blurb"', 1)
    sub.raw_json = text
    repo.pr(sub)
    (m,) = by_key(fmt_of(run_gate(repo)), "dup:")
    later = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith('  "val_bpb": 1.'))
    assert "duplicate key 'val_bpb'" in m.text and (m.line, m.column) == (later, 3)  # the repeated (later) key


def test_track_checks(repo, make, run_gate):
    sub = make(meta={"track": "non_record_16mb"})
    repo.pr(sub)
    (m,) = by_key(fmt_of(run_gate(repo)), "track-mismatch")
    assert "says 'non_record_16mb' but the folder is under records/track_10min_16mb/" in m.text
    sub = make(track="track_giant_model")
    repo.pr(sub, name="pr2")
    r = run_gate(repo, head="pr2")
    (m,) = by_key(fmt_of(r), "track")
    assert m.path == sub.folder and "unknown track 'track_giant_model'" in m.text


def test_dates(repo, make, run_gate):
    sub = make(meta={"date": "2026-02-30"})
    repo.pr(sub)
    (m,) = by_key(fmt_of(run_gate(repo)), "date")
    assert m.level == "error" and "not a calendar date" in m.text
    sub = make(meta={"date": "2026-05-03"})
    repo.pr(sub, name="late")
    r = run_gate(repo, head="late")
    (m,) = by_key(fmt_of(r), "cutoff")
    assert m.level == "warning" and m.rule == "PG-CHRONO"
    assert fmt_of(r).status is Status.WARN and r.exit_code() == 0


def test_recommended_fields_are_notes(repo, make, run_gate):
    sub = make(meta={"seeds": None, "track": None})
    repo.pr(sub)
    r = run_gate(repo)
    notes = by_key(fmt_of(r), "recommend:")
    assert {m.key for m in notes} == {"recommend:seeds", "recommend:track"}
    assert all(m.level == "note" for m in notes) and fmt_of(r).status is Status.PASS


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_in_folder(repo, make, run_gate):
    sub = make()
    repo.branch("pr")
    repo.write(sub.files())
    os.symlink("/etc/passwd", repo.path / sub.folder / "data.txt")
    repo.commit("PR with a link")
    repo.git("checkout", "-q", "main")
    r = run_gate(repo)
    (m,) = by_key(fmt_of(r), "symlink")
    assert m.path == f"{sub.folder}/data.txt" and "symbolic link" in m.text
