"""The sweep's triage page, built from a real sweep of a git repository made in the test, in headless Chromium."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_spec = importlib.util.spec_from_file_location("sweep_tests", Path(__file__).resolve().parents[1] / "test_sweep.py")
_sweep_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sweep_tests)

HOSTILE = 'Tuned <script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    import os

    from harness.cli import main

    tmp = tmp_path_factory.mktemp("sweep-site")
    repo = _sweep_tests.build_competition(tmp)
    meta = _sweep_tests.write_metadata(tmp, hostile_title=HOSTILE)
    old = os.environ.get("SCOREFIRST_CACHE_DIR")
    os.environ["SCOREFIRST_CACHE_DIR"] = str(tmp / "cache")
    try:
        assert main(["sweep", "--repo", str(repo), "--metadata", str(meta), "--out", str(tmp / "out")]) == 0
    finally:
        if old is None:
            os.environ.pop("SCOREFIRST_CACHE_DIR", None)
        else:
            os.environ["SCOREFIRST_CACHE_DIR"] = old
    doc = json.loads((tmp / "out" / "sweep.json").read_text())
    return tmp / "out" / "index.html", doc


def test_page_is_self_contained(site):
    page, _ = site
    html = page.read_text()
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert csp.startswith("default-src 'none'; style-src 'sha256-") and "script-src 'sha256-" in csp
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', html)  # nothing loaded from anywhere
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_rendering_is_a_view_of_the_sweep_json(site):
    from reports.sweep_site import build_page

    page, doc = site
    a = build_page(doc, footer="f")
    assert a == build_page(json.loads(json.dumps(doc)), footer="f")  # deterministic, from the JSON alone


def _open(watched, page):
    watched.page.goto(page.as_uri())
    return watched.page


@pytest.mark.browser
def test_triage_page_in_chromium(watched, site):
    page_path, doc = site
    page = _open(watched, page_path)
    assert watched.requests == [page_path.as_uri()]
    rows = page.locator("#subs-table tbody tr")
    assert rows.count() == 4  # PR 13 changes nothing under records/: listed apart
    assert page.locator("details.skipped summary").inner_text() == "1 PRs change nothing under records/"
    # every PR with verdict, rule, claimed bpb, date
    row10 = page.locator("#pr-10")
    assert row10.locator("td").nth(2).inner_text() == "2026-03-02"
    assert row10.locator("td").nth(3).inner_text() == "open"
    assert row10.locator("td").nth(4).inner_text().startswith("FAIL")
    assert "PG-TTT-001" in row10.locator("td").nth(5).inner_text()
    assert row10.locator("td").nth(6).inner_text() == "1.05120"
    # the hostile title is text
    assert HOSTILE in page.locator("#pr-11 td.subcol").inner_text()
    # filter by text and by verdict
    page.fill("#filter", "pg-ttt-001")
    assert page.locator("#shown").inner_text() == "3 of 4 shown"
    page.fill("#filter", "")
    page.locator('button.vfilter[data-verdict="PASS"]').click()
    visible = [r.get_attribute("id") for r in rows.all() if r.is_visible()]
    assert visible == ["pr-12"]
    page.locator('button.vfilter[data-verdict="PASS"]').click()
    # sort by claimed bpb, ascending
    page.locator("#subs-table th", has_text="Claimed bpb").click()
    order = [r.get_attribute("id") for r in rows.all()]
    assert order[:3] == ["pr-11", "pr-10", "pr-12"]  # 1.0498 < 1.0512 < 1.09; PR 14 has none: last
    # a cluster: count, first appearance, members that link to the PR rows
    cluster = page.locator("#clusters-table tbody tr")
    assert cluster.count() == 1
    assert cluster.locator("td").nth(0).inner_text() == "2"
    assert cluster.locator("td").nth(2).inner_text().startswith("#10 2026-03-02")
    cluster.locator("details summary").click()
    cluster.locator('a.prref[href="#pr-11"]').click()
    assert page.evaluate("location.hash") == "#pr-11"
    assert page.evaluate("document.querySelector('#pr-11').matches(':target')")
    # lineage: #11 descends from #10
    page.locator("#pr-11 a.parent").click()
    assert page.evaluate("location.hash") == "#pr-10"
    # the weekly chart
    bars = page.locator("#weeks-chart rect.bar")
    assert bars.count() == 4  # FAIL and PASS in the first week, FAIL in the next two
    tips = sorted(t.text_content() for t in page.locator("#weeks-chart rect.bar title").all())
    assert tips[0] == "week of 2026-03-02: 1 FAIL (of 2)"
    assert watched.console_errors == [] and watched.page_errors == [] and watched.dialogs == []
