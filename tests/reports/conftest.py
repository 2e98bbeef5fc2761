"""Fixtures for the report tests: the rendered fixture report (built once, StrictUndefined), and a headless
Chromium driven by Playwright (skipped cleanly when either is missing).

Browser launch follows CONVENTIONS §4.5: the system chromium (/usr/bin/chromium, or $SCOREFIRST_CHROMIUM), no
sandbox (root on CI), no GPU, and every background-networking feature off so the only request is the page itself.
Screenshots go to tests/reports/artifacts/ (ignored by git), or to $SCOREFIRST_ARTIFACTS_DIR.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GOLD = HERE / "gold"
INPUTS = [
    FIXTURES / "examples_dynamic.json",
    FIXTURES / "extras.json",
    FIXTURES / "hostile.json",
    FIXTURES / "ref_tiny_score_first",
    FIXTURES / "ref_tiny_illegal_pre_eval" / "results.json",
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--no-default-browser-check"]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a headless Chromium (skipped when it is not installed)")


@dataclass
class Rendered:
    dir: Path
    report: object  # reports.render.Report
    inputs: object  # reports.inputs.Inputs
    fixture_results: dict = field(default_factory=dict)  # target -> result dict as stored in the fixture JSON

    def page(self, name: str) -> str:
        return (self.dir / name).read_text(encoding="utf-8")

    def page_of(self, target_part: str) -> str:
        """The submission page whose target contains `target_part` (exactly one must)."""
        found = [p for p, t in self.report.submission_pages.items() if target_part in t]
        assert len(found) == 1, (target_part, found)
        return found[0]

    def result_of(self, target_part: str) -> dict:
        """The fixture result (as stored in JSON) whose target contains `target_part`."""
        found = [r for t, r in self.fixture_results.items() if target_part in t]
        assert len(found) == 1, (target_part, len(found))
        return found[0]


def fixture_results() -> dict:
    out = {}
    for p in INPUTS:
        if p.suffix != ".json" or "ref_" in str(p):
            continue
        obj = json.loads(p.read_text(encoding="utf-8"))
        for r in obj.get("results", [obj]):
            out[r["target"]] = r
    return out


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Rendered:
    from reports.inputs import load_inputs
    from reports.render import render_inputs

    out = tmp_path_factory.mktemp("report")
    inputs = load_inputs(INPUTS)
    report = render_inputs(inputs, out, strict=True)
    return Rendered(out, report, inputs, fixture_results())


# --- browser ---------------------------------------------------------------------------------------------------------


def chromium_path() -> str | None:
    cand = os.environ.get("SCOREFIRST_CHROMIUM") or "/usr/bin/chromium"
    if Path(cand).is_file() and os.access(cand, os.X_OK):
        return cand
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    d = Path(os.environ.get("SCOREFIRST_ARTIFACTS_DIR") or HERE / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        except Exception as e:  # a chromium that cannot start here is an environment problem, not a test failure
            pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


@dataclass
class Watched:
    page: object
    console_errors: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    dialogs: list = field(default_factory=list)


@pytest.fixture
def watched(browser):
    """A fresh page that records console errors, page errors, every request and every dialog."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, java_script_enabled=True)
    page = context.new_page()
    w = Watched(page)
    page.on("console", lambda m: w.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: w.page_errors.append(str(e)))
    page.on("request", lambda r: w.requests.append(r.url))

    def on_dialog(d):
        w.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    yield w
    context.close()


# --- parsing pages without a browser ---------------------------------------------------------------------------------


@dataclass
class Parsed:
    ids: dict = field(default_factory=dict)  # id -> (tag, attrs)
    links: list = field(default_factory=list)  # href values
    tags: list = field(default_factory=list)  # (tag, attrs) in document order
    text: str = ""

    def by_tag(self, tag: str) -> list:
        return [a for t, a in self.tags if t == tag]


def parse_html(html: str) -> Parsed:
    from html.parser import HTMLParser

    out = Parsed()
    chunks: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            out.tags.append((tag, a))
            if "id" in a:
                assert a["id"] not in out.ids, f"duplicate id {a['id']!r}"
                out.ids[a["id"]] = (tag, a)
            if tag == "a" and "href" in a:
                out.links.append(a["href"])

        def handle_data(self, data):
            chunks.append(data)

    p = P(convert_charrefs=True)
    p.feed(html)
    p.close()
    out.text = "".join(chunks)
    return out


@pytest.fixture
def parse():
    return parse_html
