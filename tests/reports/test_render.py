"""The HTML report without a browser: pages, links and anchors, findings on their lines, escaping, determinism."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from audits.registry import all_rules
from reports.highlight import highlight_lines, split_lines, visible
from reports.inputs import ReportInputError, load_inputs, log_budgets
from reports.render import build, make_env, scrub_footer

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


# --- highlighting ----------------------------------------------------------------------------------------------------


def test_highlight_keeps_one_fragment_per_line_and_splits_multiline_tokens():
    src = 'x = """a\nb <c>"""  # note\n\n\ndef f():\n    return 1\n'
    lines = highlight_lines(src)
    assert len(lines) == len(split_lines(src)) == 6
    assert all(line.count("<span") == line.count("</span>") for line in lines)
    assert lines[1].startswith('<span class="s">b &lt;c&gt;')
    assert '<span class="k">def</span>' in lines[4]


@pytest.mark.parametrize("text,n", [("a\r\nb\rc\n", 3), ("a\x0cb\n", 1), ("a\u2028b\n", 1), ("no newline", 1)])
def test_line_breaks_are_counted_like_the_auditor(text, n):
    assert len(highlight_lines(text)) == len(split_lines(text)) == n


def test_invisible_and_bidi_characters_are_made_visible():
    html = str(visible("a\u202eb\x1b[0m\u200bc<"))
    assert "\u202e" not in html and "\x1b" not in html and "\u200b" not in html
    assert "U+202E" in html and "U+001B" in html and "U+200B" in html and html.endswith("c&lt;")


def test_autoescape_is_on_for_every_template():
    env = make_env(strict=True)
    for name in env.list_templates():
        assert env.autoescape(name) is True, name
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


# --- pages and links -------------------------------------------------------------------------------------------------


def test_pages_of_every_kind(rendered):
    pages = set(rendered.report.pages)
    assert "index.html" in pages
    assert len([p for p in pages if p.startswith("sub-")]) == rendered.report.submissions == 9
    assert len([p for p in pages if p.startswith("ref-")]) == 2
    assert {f"rule-{r.slug()}.html" for r in all_rules()} <= pages
    for name in pages:
        assert (rendered.dir / name).read_text(encoding="utf-8") == rendered.report.pages[name]


def test_every_local_link_and_anchor_resolves(rendered, parse):
    parsed = {name: parse(html) for name, html in rendered.report.pages.items()}
    for name, p in parsed.items():
        for href in p.links:
            if href.startswith("https://"):
                assert href.startswith("https://github.com/openai/parameter-golf/pull/"), (name, href)
                continue
            assert not re.match(r"^[a-z]+:", href), (name, href)  # no javascript:, data:, file: ...
            page, _, frag = href.partition("#")
            target = parsed[page or name] if (page or name) in parsed else None
            assert target is not None, f"{name}: link to missing page {href}"
            if frag:
                assert frag in target.ids, f"{name}: link to missing anchor {href}"


def test_index_links_every_page_and_counts_verdicts(rendered, parse):
    p = parse(rendered.page("index.html"))
    linked = {h.split("#")[0] for h in p.links}
    for name in rendered.report.pages:
        if name != "index.html":
            assert name in linked, name
    rows = re.findall(r'<tr data-verdict="(\w+)"', rendered.page("index.html"))
    for v in ("PASS", "WARN", "FAIL"):
        assert f'data-verdict="{v}" aria-pressed="false" title="show only {v}">{v} <b>{rows.count(v)}</b>' in \
            rendered.page("index.html")


def test_index_columns(rendered, parse):
    html = rendered.page("index.html")
    for head in ("PR", "Submission", "Claimed bpb", "Recon. bpb", "Artifact B", "Train", "Eval", "C1", "C2", "C3",
                 "C4", "DATA", "CAL", "NET", "BYTES", "Overall"):
        assert re.search(rf"<th [^>]*>{head}</th>", html), head
    # the bundled EnvGated example: claimed 1.10486, reconstructed 3.03719 by the dynamic run, C1 raised to FAIL by it
    row = next(r for r in html.split("<tr ") if "2026-03-28_11L_EvalTTT_EnvGated" in r)
    assert "1.10486" in row and "3.03719" in row and "15,921,225" in row
    assert "from the dynamic audit" in row
    # time budgets from the example's train logs: evaluation includes the 313.9 s `ttt:done` phase
    assert "600.1 s" in row and "388.8 s" in row
    demo = next(r for r in html.split("<tr ") if "Demo_Suppressions" in r)
    assert 'class="num over"' in demo  # 16,012,345 bytes and 612.9 s eval are over their limits
    assert 'href="https://github.com/openai/parameter-golf/pull/2101"' in demo


# --- findings, anchors, marks ----------------------------------------------------------------------------------------


def _anchor(r: dict, f: dict, file_index: int, main: bool) -> str:
    prefix = "" if main else f"f{file_index}-"
    if f["origin"]:
        return f"{prefix}d{f['origin']['layer']}-L{f['line']}"
    return f"{prefix}L{f['line']}"


def test_every_finding_appears_once_and_marks_its_line(rendered, parse):
    total = 0
    for target, r in rendered.fixture_results.items():
        name = rendered.page_of(target)
        html = rendered.page(name)
        p = parse(html)
        cards = [a for t, a in p.tags if t == "article" and "finding" in a.get("class", "")]
        findings = [(i, f) for i, fr in enumerate(r["files"], 1) for f in fr["findings"]]
        assert len(cards) == len(findings), target
        shown = [fr for fr in r["files"] if not fr["error"]]
        main = next((fr for fr in shown if fr["path"].endswith("train_gpt.py")), shown[0] if shown else None)
        for i, f in findings:
            fr = r["files"][i - 1]
            card = next(c for c in cards if c["data-rule"] == f["rule_id"] and c["data-line"] == str(f["line"]))
            anchor = _anchor(r, f, i, fr is main)
            assert card["data-anchor"] == anchor
            tag, attrs = p.ids[anchor]
            assert tag == "tr"
            status = f["status"]
            want = f"sev-{f['severity']}" if status == "active" else f"st-{status}"
            assert want in attrs.get("class", ""), (target, anchor, attrs)
            assert f'href="#{anchor}"' in html
            total += 1
    assert total >= 8


def test_findings_are_grouped_by_condition_with_their_ruling(rendered):
    html = rendered.page(rendered.page_of("2026-03-28_11L_EvalTTT_EnvGated"))
    group = html[html.index('id="group-C3"'):html.index('id="source"')]
    rule = next(r for r in all_rules() if r.id == "PG-TTT-001")
    from markupsafe import escape

    assert str(escape(rule.ruling.quote)) in group
    assert str(escape(rule.ruling.who)) in group
    assert 'href="rule-pg-ttt-001.html"' in group


def test_suppressed_and_inactive_findings_are_shown_apart(rendered):
    html = rendered.page(rendered.page_of("Demo_Suppressions"))
    findings = html[html.index('id="findings"'):html.index('id="not-counted"')]
    apart = html[html.index('id="not-counted"'):html.index('id="source"')]
    assert 'data-rule="PG-NET"' not in findings and 'data-rule="PG-NET"' in apart
    assert "only the offline data download script uses it" in apart
    assert "no: suppresses nothing" in apart  # the unused PG-TTT-004 suppression
    assert 'id="suppressed"' in apart and "Suppression comments" in apart


def test_decoded_layer_is_shown_with_a_note_and_the_exec_line_points_to_it(rendered, parse):
    html = rendered.page(rendered.page_of("packed"))
    p = parse(html)
    assert "d1" in p.ids and p.ids["d1"][0] == "section"
    assert "Packed code: decoded from the" in html and "b85decode → lzma" in html
    assert "sev-error" in p.ids["d1-L245"][1]["class"]
    assert "sev-error" in p.ids["L3"][1]["class"]  # the exec line of the outer file
    start = html.index('id="L3"')
    note = html[start:html.index("<tr id=", start)]
    assert "in decoded layer 1, line 245" in note


def test_dynamic_section(rendered, parse):
    html = rendered.page(rendered.page_of("2026-03-28_11L_EvalTTT_EnvGated"))
    dyn = html[html.index('id="dynamic"'):html.index('id="source"')]
    assert dyn.count('class="ev ev-update"') == 96 + 1  # + the legend swatch
    assert dyn.count('class="ev ev-score"') == 32 + 1
    assert dyn.count('<g class="violation">') == 32
    assert "future-perturbation" in dyn and "normalization" in dyn
    assert "tokens after position 4,096 replaced" in dyn  # what was probed
    assert 'class="disagree"' in dyn  # C1: static PASS, dynamic FAIL
    legal = rendered.page(rendered.page_of("2026-03-23_11L_LeakyReLU_XSA4_LegalTTT"))
    assert '<g class="violation">' not in legal and "0 violations" in legal


def test_reference_pages(rendered):
    ref = next(p for p, t in rendered.report.reference_pages.items() if "score-first" in t)
    html = rendered.page(ref)
    results = json.loads((FIXTURES / "ref_tiny_score_first" / "results.json").read_text())
    for s in results["seeds"]:
        assert f'{s["post_ttt"]["val_bpb"]:.4f}' in html
    assert f'{results["summary"]["post_ttt"]["mean"]:.4f}' in html
    assert f'{results["summary"]["post_ttt"]["std"]:.4f}' in html
    for key in ("readme", "welch"):
        from markupsafe import escape

        assert str(escape(results["significance"][key]["policy"])) in html
    for stage in ("pre-quant", "post-quant", "sliding", "post-TTT"):
        assert f">{stage}</text>" in html
    assert html.count('<g class="series') == 3 and 'id="plot-seeds"' in html
    assert "git commit" in html  # provenance from run_spec.json
    illegal = rendered.page(next(p for p, t in rendered.report.reference_pages.items() if "illegal" in t))
    assert "ILLEGAL negative control" in illegal and "significance needs at least two seeds" in illegal
    assert not re.search(r">\s*(nan|NaN)\s*<", illegal) and ">n/a<" in illegal


def test_rule_page_from_the_rule_metadata(rendered):
    from markupsafe import escape

    for rule in all_rules():
        html = rendered.page(f"rule-{rule.slug()}.html")
        secs = rule.sections()
        for name in ("What it flags", "Why it is illegal", "Example", "Use instead"):
            assert f"<h2>{name}</h2>" in html
        assert str(escape(rule.ruling.quote)) in html and str(escape(rule.ruling.where)) in html
        assert html.count('class="ex-illegal"') == len(rule.INVALID)
        assert html.count('class="ex-legal"') == len(rule.VALID)
        assert str(escape(secs["Why it is illegal"].split()[0])) in html
    html = rendered.page("rule-pg-ttt-001.html")
    assert rendered.page_of("2026-03-28_11L_EvalTTT_EnvGated") + "#finding-" in html


# --- hostile content ------------------------------------------------------------------------------------------------


def test_hostile_content_renders_as_text(rendered, parse):
    for name, html in rendered.report.pages.items():
        p = parse(html)
        assert len(p.by_tag("script")) == 1, name
        assert not p.by_tag("img") and not p.by_tag("iframe") and not p.by_tag("object"), name
        for tag, attrs in p.tags:
            assert not any(k.startswith("on") for k in attrs), (name, tag, attrs)
            assert "style" not in attrs, (name, tag)  # the CSP allows no inline style attributes
            assert not str(attrs.get("href", "")).lower().startswith("javascript"), (name, attrs)
        assert html.count('<footer id="build-info">') == 1
    host = rendered.page(rendered.page_of("records/\"><script>"))
    p = parse(host)
    for literal in ('<script>alert("x")</script>', "{{ val_tokens }}", "<img src=x onerror=alert('author')>",
                    "{{ 7*7 }} <svg onload=alert(1)> Ünïcødé", "</td></tr></table><script>alert(4)</script>",
                    "' onmouseover='alert(1)", "payload </script><script>alert(2)</script>", "{% raw %}",
                    '"\\"><img src=x onerror=alert(1)>"', "B" * 3000, "A" * 20_000):
        assert literal in p.text, literal
    assert "{{" in host and "49" not in re.findall(r"<h1>([^<]*)", host)[0]  # templates in data are not evaluated
    assert "javascript:alert('pr')" not in " ".join(p.links)
    assert "U+202E" in host and "\u202e" not in host


def test_csp_allows_exactly_the_inline_style_and_script(rendered):
    html = rendered.page("index.html")
    import html as htmllib

    csp = htmllib.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)

    def h(t: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(t.encode()).digest()).decode() + "'"

    assert f"style-src {h(style)};" in csp and f"script-src {h(script)};" in csp
    assert csp.startswith("default-src 'none';")


# --- determinism and gold files --------------------------------------------------------------------------------------


def test_rerender_is_byte_identical_and_independent_of_input_order(rendered, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    inputs = [FIXTURES / "ref_tiny_illegal_pre_eval" / "results.json", FIXTURES / "ref_tiny_score_first",
              FIXTURES / "hostile.json", FIXTURES / "extras.json", FIXTURES / "examples_dynamic.json"]
    again = build(load_inputs(inputs), strict=True)
    assert sorted(again.pages) == sorted(rendered.report.pages)
    for name, html in again.pages.items():
        assert scrub_footer(html) == scrub_footer(rendered.report.pages[name]), name
    assert "at 2023-11-14T22:13:20Z." in again.pages["index.html"]
    small = [FIXTURES / "hostile.json"]
    assert build(load_inputs(small)).pages == build(load_inputs(small)).pages  # the footer too, with a fixed time


GOLD_PAGES = {
    "index.html": None,
    "envgated.html": "2026-03-28_11L_EvalTTT_EnvGated",
    "demo.html": "Demo_Suppressions",
    "packed.html": "packed",
    "hostile.html": 'records/"><script>',
    "ref-score-first.html": "ref:score-first",
    "ref-illegal.html": "ref:illegal",
    "rule-pg-ttt-001.html": "rule-pg-ttt-001.html",
}


def _gold_source(rendered, key) -> str:
    if key is None:
        return "index.html"
    if key.startswith("ref:"):
        return next(p for p, t in rendered.report.reference_pages.items() if key[4:] in t)
    if key.startswith("rule-"):
        return key
    return rendered.page_of(key)


@pytest.mark.parametrize("gold", sorted(GOLD_PAGES))
def test_gold(rendered, gold, tmp_path_factory, monkeypatch):
    """Pages compared with tests/reports/gold/ after scrubbing the footer. SCOREFIRST_UPDATE_GOLD=1 rewrites them."""
    import os

    actual = scrub_footer(rendered.page(_gold_source(rendered, GOLD_PAGES[gold])))
    path = HERE / "gold" / gold
    if os.environ.get("SCOREFIRST_UPDATE_GOLD"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        out = tmp_path_factory.mktemp("gold-actual") / gold
        out.write_text(actual, encoding="utf-8")
        line = next(i for i, (x, y) in enumerate(zip(actual.splitlines() + [""], expected.splitlines() + [""]), 1)
                    if x != y)
        pytest.fail(f"{gold} differs from the gold file at line {line}; actual page saved to {out} "
                    "(SCOREFIRST_UPDATE_GOLD=1 rewrites the gold files)")


# --- inputs ----------------------------------------------------------------------------------------------------------


def test_source_is_read_from_disk_only_when_its_hash_matches(tmp_path):
    obj = json.loads((FIXTURES / "extras.json").read_text())
    r = obj["results"][0]
    fr = r["files"][0]
    src = fr.pop("source")
    stored = tmp_path / "nosrc.json"
    stored.write_text(json.dumps(r))
    root = tmp_path / "root"
    (root / fr["path"]).parent.mkdir(parents=True)
    (root / fr["path"]).write_text(src, encoding="utf-8")
    got = load_inputs([stored], [root])
    assert got.audits[0].files[0].source == src and not got.missing_sources
    (root / fr["path"]).write_text(src + "# changed\n", encoding="utf-8")
    got = load_inputs([stored], [root])
    assert got.audits[0].files[0].source is None and got.missing_sources
    page = build(got, strict=True).pages
    html = next(h for n, h in page.items() if n.startswith("sub-"))
    assert "The source is not stored in these results" in html and "(not linked: source or line not available)" in html


@pytest.mark.parametrize("content,msg", [
    ("{", "invalid JSON"),
    ('{"hello": 1}', "not a scorefirst audit result"),
    ('{"schema_version": "9.0", "target": "x"}', "unsupported result schema version"),
    ('{"schema_version": "1.0"}', "not a scorefirst audit result"),
    ('{"schema_version": "1.0", "results": [{"schema_version": "1.0"}]}', "missing field"),
    ('{"schema": "scorefirst.reference.results/1"}', "without a 'seeds' list"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, content, msg):
    p = tmp_path / "in.json"
    p.write_text(content)
    with pytest.raises(ReportInputError, match=re.escape(msg)):
        load_inputs([p])


CALIBRATED_LOG = """\
step:1/20000 train_loss:6.9143 train_time:84ms step_avg:84.00ms
step:7100/20000 val_loss:2.0606 val_bpb:1.2204 train_time:598000ms step_avg:84.23ms
stopping_early: wallclock_cap train_time:598000ms step:7100/20000
gptq:hessians:66 time:4.2s
Serialized model int6+lzma: 15870000 bytes
Code size: 47642 bytes
final_int6_sliding_window val_loss:2.0727 val_bpb:1.2276 stride:64 eval_time:74000ms
final_int6_sliding_window_exact val_loss:2.07269931 val_bpb:1.22758812
ttt:done time:313.9s
legal_ttt val_loss:1.8905 val_bpb:1.1196 eval_time:409796ms
"""
PLAIN_LOG = """\
step:7000/20000 val_loss:2.0650 val_bpb:1.2230 train_time:590000ms step_avg:84.29ms
stopping_early: wallclock_cap train_time:590000ms step:7000/20000
final_int6_sliding_window val_loss:2.0700 val_bpb:1.2260 eval_time:70000ms
"""


def _gate_budgets(repo: Path, folder: str):
    """The gate's budgets check of `repo/folder` (a folder under records/<track>/)."""
    from harness.gate.checks import budgets_check, load_folder
    from harness.gate.config import GateConfig

    return budgets_check(load_folder(folder, repo / folder, "added", []), GateConfig())


def test_log_budgets_are_the_gates_figures_calibration_and_ttt_phase_included(tmp_path):
    folder = "records/track_10min_16mb/2026-04-02_Calibrated"
    root = tmp_path / folder
    root.mkdir(parents=True)
    (root / "train_seed1.log").write_text(CALIBRATED_LOG)
    (root / "train_seed2.log").write_text(PLAIN_LOG)
    b = log_budgets(root)
    # training: loop 598.0 s + GPTQ calibration 4.2 s; evaluation: 74.0 + 409.796 s of stages + the 313.9 s TTT phase
    assert b == {"train_seconds": pytest.approx(602.2), "eval_seconds": pytest.approx(797.696), "logs": 2,
                 "train_over": True, "eval_over": True}
    gate = _gate_budgets(tmp_path, folder)
    assert (b["train_seconds"], b["eval_seconds"]) == (max(gate.data["train_s"]), max(gate.data["eval_s"]))
    timing = [m for m in gate.messages if m.rule.startswith("PG-TIME")]
    assert {m.rule for m in timing} == {"PG-TIME-TRAIN", "PG-TIME-EVAL"}
    assert all(m.path.endswith("train_seed1.log") for m in timing)

    (root / "train_seed1.log").unlink()
    assert log_budgets(root) == {"train_seconds": 590.0, "eval_seconds": 70.0, "logs": 1, "train_over": False,
                                 "eval_over": False}
    (root / "train_seed2.log").unlink()
    assert log_budgets(root) is None


def test_report_budgets_of_the_examples_are_the_gates(rendered):
    """The figures the report read for each bundled example equal the gate's budgets check of the same folder."""
    from reports.inputs import bundled_examples_root

    checked = 0
    for result, logs in zip(rendered.inputs.audits, rendered.inputs.logs, strict=True):
        if logs is None:
            continue
        gate = _gate_budgets(bundled_examples_root(), result.target)
        assert logs["train_seconds"] == max(gate.data["train_s"]), result.target
        assert logs["eval_seconds"] == max(gate.data["eval_s"]), result.target
        over = {m.rule for m in gate.messages if m.rule.startswith("PG-TIME")}
        assert (logs["train_over"], logs["eval_over"]) == ("PG-TIME-TRAIN" in over, "PG-TIME-EVAL" in over)
        checked += 1
    assert checked == 6
    html = rendered.page("index.html")
    rows = {name: next(r for r in html.split("<tr ") if name in r)
            for name in ("SP8192_PreQuantTTT_AdamW_GPTQ", "11L_EvalTTT_EnvGated")}
    assert "592.3 s" in rows["SP8192_PreQuantTTT_AdamW_GPTQ"]  # 588.1 s loop + 4.2 s GPTQ calibration
    assert "388.8 s" in rows["11L_EvalTTT_EnvGated"]  # 74.9 s sliding-window stage + the 313.9 s `ttt:done` phase


def test_a_line_outside_the_source_is_not_linked(tmp_path, parse):
    obj = json.loads((FIXTURES / "extras.json").read_text())
    r = obj["results"][0]
    r["files"][0]["findings"][0]["line"] = 10_000
    r["files"][0]["findings"][0]["related"] = [{"line": 0, "message": "nowhere"}]
    p = tmp_path / "r.json"
    p.write_text(json.dumps(r))
    html = next(h for n, h in build(load_inputs([p]), strict=True).pages.items() if n.startswith("sub-"))
    parsed = parse(html)
    assert "(not linked: source or line not available)" in html and "L10000" not in parsed.ids
    assert all(not h.startswith("#L10000") and h != "#L0" for h in parsed.links)
