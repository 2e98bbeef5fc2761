"""The report in a real headless Chromium (Playwright, system chromium): skipped cleanly when either is missing."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def _open(watched, rendered, name: str, fragment: str = ""):
    url = (rendered.dir / name).as_uri() + fragment
    watched.page.goto(url)
    return url


def test_every_page_loads_without_errors_or_requests(watched, rendered):
    for name in sorted(rendered.report.pages):
        watched.requests.clear()
        url = _open(watched, rendered, name)
        assert watched.requests == [url], (name, watched.requests)
    assert watched.console_errors == [] and watched.page_errors == [] and watched.dialogs == []


@pytest.mark.parametrize("target", ["2026-03-28_11L_EvalTTT_EnvGated", "Demo_Suppressions", "packed",
                                    'records/"><script>'])
def test_finding_links_land_on_the_flagged_line(watched, rendered, target):
    name = rendered.page_of(target)
    _open(watched, rendered, name)
    page = watched.page
    cards = page.locator("article.finding")
    n = cards.count()
    assert n == sum(len(fr["findings"]) for fr in rendered.result_of(target)["files"])
    for i in range(n):
        card = cards.nth(i)
        anchor = card.get_attribute("data-anchor")
        status = card.get_attribute("class").split("st-")[1].split()[0]
        severity = card.get_attribute("class").split("sev-")[1].split()[0]
        card.locator("a.lineref").click()
        assert page.evaluate("location.hash") == f"#{anchor}"
        info = page.evaluate("""(id) => { const el = document.getElementById(id); const r = el.getBoundingClientRect();
            return {top: r.top, bottom: r.bottom, h: innerHeight, cls: el.className, tag: el.tagName,
                    target: el.matches(':target'), n: el.querySelector('td.ln a').textContent}; }""", anchor)
        assert info["tag"] == "TR" and info["target"]
        assert 0 <= info["top"] < info["h"] and info["bottom"] > 0, (anchor, info)
        assert info["n"] == anchor.rsplit("L", 1)[1]
        want = f"sev-{severity}" if status == "active" else f"st-{status}"
        assert want in info["cls"], (anchor, info)
    assert watched.console_errors == [] and watched.page_errors == []


def test_index_to_submission_to_rule_and_back(watched, rendered):
    page = watched.page
    index_url = _open(watched, rendered, "index.html")
    sub = rendered.page_of("2026-03-28_11L_EvalTTT_EnvGated")
    page.locator(f'a.sub[href="{sub}"]').click()
    assert page.url.endswith(sub)
    assert "11L stack + eval-time adaptation" in page.locator("h1").inner_text()
    page.locator('article.finding[data-rule="PG-TTT-001"] header a.rule').click()
    assert page.url.endswith("rule-pg-ttt-001.html")
    assert page.locator("h1").inner_text().startswith("PG-TTT-001")
    assert page.locator("#ruling blockquote").count() == 1
    page.go_back()
    assert page.url.endswith(sub)
    page.go_back()
    assert page.url == index_url
    # and from a rule page, its list of flagged submissions leads back to the finding
    _open(watched, rendered, "rule-pg-ttt-001.html")
    page.locator("ul.flagged a").first.click()
    assert re.search(r"sub-.*\.html#finding-\d+$", page.url)
    page.locator("#nav-index").click()
    assert page.url == index_url
    assert watched.console_errors == [] and watched.page_errors == []


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all("#subs-table tbody tr", f"rows => rows.map(r => r.cells[{index}].getAttribute('data-sort'))")


def test_sorting(watched, rendered):
    page = watched.page
    _open(watched, rendered, "index.html")
    head = page.locator("#subs-table thead th", has_text="Claimed bpb")
    idx = page.eval_on_selector_all("#subs-table thead th", "ths => ths.map(t => t.textContent)").index("Claimed bpb")
    head.click()
    assert head.get_attribute("aria-sort") == "ascending"
    vals = _column(page, idx)
    nums = [float(v) for v in vals if v]
    assert nums == sorted(nums) and vals[len(nums):] == [""] * (len(vals) - len(nums))  # unknown values last
    head.click()
    assert head.get_attribute("aria-sort") == "descending"
    nums = [float(v) for v in _column(page, idx) if v]
    assert nums == sorted(nums, reverse=True)
    sub = page.locator("#subs-table thead th", has_text="Submission")
    assert sub.get_attribute("aria-sort") == "none"
    sub.click()
    names = _column(page, 1)
    assert names == sorted(names, key=lambda s: s)
    overall = page.locator("#subs-table thead th", has_text="Overall")
    overall.click()
    overall.click()  # descending: FAIL first
    verdicts = page.eval_on_selector_all("#subs-table tbody tr", "rows => rows.map(r => r.dataset.verdict)")
    assert verdicts[0] == "FAIL" and verdicts[-1] == "PASS"
    assert watched.console_errors == [] and watched.page_errors == []


def _visible_rows(page) -> list[str]:
    return page.eval_on_selector_all("#subs-table tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.cells[1].getAttribute('data-sort'))")


def test_filtering(watched, rendered):
    page = watched.page
    _open(watched, rendered, "index.html")
    total = rendered.report.submissions
    page.fill("#filter", "hashed5gram")
    assert _visible_rows(page) == ["records/track_10min_16mb/2026-03-26_11L_Hashed5gram_EvalCache"]
    assert page.locator("#shown").inner_text() == f"1 of {total} shown"
    page.fill("#filter", "pg-ttt-001")  # rule ids of active findings are searchable
    assert len(_visible_rows(page)) >= 2
    page.fill("#filter", "")
    assert len(_visible_rows(page)) == total
    page.locator('button.vfilter[data-verdict="PASS"]').click()
    passing = _visible_rows(page)
    assert passing and all("LegalTTT" in t or "DocIsolation" in t for t in passing)
    page.locator('button.vfilter[data-verdict="FAIL"]').click()
    both = page.eval_on_selector_all("#subs-table tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.verdict)")
    assert set(both) <= {"PASS", "FAIL"} and "FAIL" in both
    page.fill("#filter", "no-such-submission")
    assert _visible_rows(page) == [] and page.locator("#shown").inner_text() == f"0 of {total} shown"
    assert watched.console_errors == [] and watched.page_errors == []


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "escaping-alone"])
def test_hostile_fixture_executes_no_script(browser, rendered, bypass_csp):
    """The hostile page runs no script of its own, even with the Content-Security-Policy switched off."""
    context = browser.new_context(bypass_csp=bypass_csp)
    page = context.new_page()
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script("window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m));")
    for name in (rendered.page_of('records/"><script>'), "index.html"):
        page.goto((rendered.dir / name).as_uri())
        page.mouse.move(200, 200)
        page.hover("h1")
        state = page.evaluate("""() => ({alerts: window.__alerts, title: document.title,
            scripts: document.scripts.length, imgs: document.images.length,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length})""")
        assert state["alerts"] == [] and state["scripts"] == 1 and state["imgs"] == 0 and state["handlers"] == 0, state
        assert "PWNED" not in state["title"]
    page.goto((rendered.dir / rendered.page_of('records/"><script>')).as_uri())
    text = page.locator("main").inner_text()
    assert '<script>alert("x")</script>' in text and "{{ 7*7 }}" in text
    assert dialogs == [] and errors == []
    context.close()


def test_screenshots(watched, rendered, artifacts_dir):
    """Full-page screenshots for a person to look at (printed paths; CI keeps tests/reports/artifacts/)."""
    shots = {"index.png": "index.html", "submission-envgated.png": rendered.page_of("2026-03-28_11L_EvalTTT_EnvGated"),
             "reference-score-first.png": next(p for p, t in rendered.report.reference_pages.items() if "score-first" in t)}
    for png, name in shots.items():
        _open(watched, rendered, name)
        path = artifacts_dir / png
        watched.page.screenshot(path=str(path), full_page=True)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        print(f"screenshot: {path}")
    assert watched.console_errors == [] and watched.page_errors == []
