"""The static audit on the real PR corpus (../shared/corpus), as benchmarks/bench_accuracy.py runs it.

A legal PR that FAILs accuses clean code; an error hides a submission; fewer ruled-rule catches than the figure
reached (README, "Accuracy on real submissions") is a regression. Skipped where the corpus is absent: it is
third-party data and never part of the project.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
RULED_RULE_CATCHES = 27  # every illegal case detectable from the code

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CORPUS / "manifest.tsv").is_file(), reason="../shared/corpus is not present"),
]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", REPO / "benchmarks" / "bench_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being created
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def corpus_run():
    return _bench().run(CORPUS)


def test_no_legal_submission_fails(corpus_run):
    results, _ = corpus_run
    false = [(r.pr, r.fail_rules) for r in results if r.label == "legal" and r.verdict == "FAIL"]
    assert false == []


def test_no_case_errors(corpus_run):
    results, _ = corpus_run
    assert [(r.pr, r.errors) for r in results if r.errors] == []


def test_every_detectable_illegal_case_fails(corpus_run):
    results, _ = corpus_run
    missed = [r.pr for r in results if r.label == "illegal" and r.detectable and not r.note and not r.caught]
    assert missed == []


def test_ruled_rule_catches_do_not_regress(corpus_run):
    _, summary = corpus_run
    assert summary["caught_on_ruled_rule_detectable"] >= RULED_RULE_CATCHES


def test_warnings_on_legal_cases_carry_reasons(corpus_run):
    results, _ = corpus_run
    for r in results:
        if r.label == "legal" and r.verdict == "WARN":
            assert r.warn_reasons and all(len(w) > 20 for w in r.warn_reasons), r.pr
