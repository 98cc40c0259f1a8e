"""The leadership report: content, languages, escaping, determinism, missing pieces.

All tests render the handmade run folder in tests/fixtures/report (see its
make_fixture.py) or a modified copy of it in a temporary folder.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis import plots
from analysis.archive import update_archive
from analysis.errors import InputError, ParameterError
from analysis.i18n import Catalogue
from analysis.report import chart_font_file, render_report
from analysis import report_charts
from analysis.report_text import HEADLINE_MODELS, effect_sentence, summary_sentences

FIXTURE = Path(__file__).parent / "fixtures" / "report"
STAMP = re.compile(r"<span data-rendered-at>[^<]*</span>")
EVIL = "<script>alert(1)</script>"
#: The fixture's report must stay small enough to mail.
MAX_BYTES = 2_000_000


class _Text(HTMLParser):
    """Visible text of a page (no style/script/attributes), and headings separately."""

    HEADINGS = {"h1", "h2", "h3", "th", "dt", "figcaption"}

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.headings: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if "style" in self.stack or "script" in self.stack or "title" in self.stack:
            return
        self.text.append(data)
        if self.HEADINGS & set(self.stack):
            self.headings.append(data.strip())


def page_text(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def cjk_share(text: str) -> float:
    """CJK ideographs among CJK + Latin letters."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return cjk / max(cjk + latin, 1)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "2025Q4"
    shutil.copytree(FIXTURE, path, ignore=shutil.ignore_patterns("*.py", "index.html"))
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    """The fixture's report in each language, rendered once for the read-only tests."""
    path = tmp_path_factory.mktemp("shared") / "2025Q4"
    shutil.copytree(FIXTURE, path, ignore=shutil.ignore_patterns("*.py", "index.html"))
    out = {}
    for lang in ("en", "zh"):
        report = render_report(path, lang=lang)  # its time is benchmarked (stage "report")
        assert report.stat().st_size < MAX_BYTES
        out[lang] = report.read_text(encoding="utf-8")
    out["run_dir"] = str(path)
    return out


@pytest.fixture
def findings() -> dict:
    return json.loads((FIXTURE / "findings.json").read_text())


def _render(run_dir: Path, lang: str) -> str:
    return render_report(run_dir, lang=lang).read_text(encoding="utf-8")


# -- content ------------------------------------------------------------------------

def test_english_report_has_every_section(rendered: dict[str, str]):
    html = rendered["en"]
    assert (Path(rendered["run_dir"]) / "index.html").exists()
    for section in ("summary", "metrics", "charts", "switches", "weight", "claims",
                    "heterogeneity", "gaming", "plans", "teams", "data-quality", "methods",
                    "provenance"):
        assert f'id="{section}"' in html
    assert 3 <= _section(html, "summary").count("<li>") <= 6
    assert "Q4 2025" in html and "31 December 2025" in html
    assert "3f9c2a1d7e5b4c6a8f0e1d2c3b4a5968778695a4" in html  # commit from manifest
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html and "http://" not in html and "https://" not in html
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == 5  # effects, survival, event study, frontier, plans
    assert all('src="data:image/png;base64,' in i and 'alt="' in i for i in imgs)


def test_summary_states_the_fixture_findings(findings: dict):
    sentences = summary_sentences(findings, Catalogue("en"))
    assert 3 <= len(sentences) <= 6
    # churn x w_satisfaction: estimate -0.118, CI (-0.1788, -0.0572) on log HR ->
    # 1 - exp(-0.118) = 11.1% lower, interval 5.6%..16.4% lower.
    assert sentences[0] == ("Moving 10 points of plan weight from revenue to satisfaction is "
                            "associated with 11% lower churn hazard (95% CI 6–16%; strong evidence).")
    assert any("22 weight–outcome pairs" in s and "no clear effect" in s for s in sentences)
    assert any("satisfaction weight of 25–35%" in s for s in sentences)


def test_chinese_report_is_chinese(rendered: dict[str, str]):
    html = rendered["zh"]
    text = page_text(html)
    body = "".join(text.text)
    assert cjk_share(body) > 0.6
    assert "2025年第4季度" in body and "2025年12月31日" in body
    english = Catalogue("en").data
    english_headings = set(english["sections"].values()) | {english["title"]}
    english_headings |= {v for k, v in english["metrics_table"].items() if k != "value"}
    for heading in text.headings:
        assert heading not in english_headings, heading
        # No heading is mainly English words (data names like plan names excepted).
        assert not re.fullmatch(r"[A-Za-z ]{6,}", heading) or heading in body, heading
    assert f'data-chart-font="{chart_font_file("zh")}"' in html
    assert plots._CJK_FILE.search(chart_font_file("zh").name)


def test_non_estimable_effect_says_insufficient_data(rendered: dict[str, str], findings: dict):
    missing = next(e for e in findings["effects"] if not e["estimable"])
    en = effect_sentence(missing, Catalogue("en"))
    zh = effect_sentence(missing, Catalogue("zh"))
    assert "insufficient data" in en and missing["note"] in en
    assert "数据不足" in zh
    assert not re.search(r"\d+(\.\d+)?%", en)
    assert "insufficient data" in rendered["en"]
    assert "数据不足" in rendered["zh"]


@pytest.mark.parametrize("lang,claim,no_claim", [
    ("en", "associated with", "no clear effect"),
    ("zh", "相关", "没有明显影响"),
])
@pytest.mark.parametrize("scale", ["log_hazard_ratio", "log_odds_ratio", "nps_points"])
def test_interval_containing_zero_never_claims_an_effect(lang, claim, no_claim, scale):
    cat = Catalogue(lang)
    for estimate in (-0.3, -0.01, 0.0, 0.02, 0.4):
        for half in (0.05, 0.31, 0.5, 2.0):
            lo, hi = estimate - half, estimate + half
            effect = dict(outcome="churn", term="w_satisfaction", scale=scale, per=0.10,
                          estimate=estimate, std_error=half / 1.96, conf_low=lo,
                          conf_high=hi, estimable=True, note="")
            sentence = effect_sentence(effect, cat)
            if lo <= 0 <= hi:
                assert no_claim in sentence and claim not in sentence, sentence
            else:
                assert claim in sentence and no_claim not in sentence, sentence


def test_clear_effect_direction_and_interval_in_business_terms():
    cat = Catalogue("en")
    up = dict(outcome="renewal", term="w_collection", scale="log_odds_ratio", per=0.10,
              estimate=0.2, std_error=0.05, conf_low=0.1, conf_high=0.3, estimable=True)
    # exp(0.2) - 1 = 22.1%; exp(0.1) - 1 = 10.5%; exp(0.3) - 1 = 35.0%.
    assert "22% higher odds of renewal (95% CI 11–35%; strong evidence)" in effect_sentence(up, cat)
    pts = dict(outcome="nps", term="w_process", scale="nps_points", per=0.10,
               estimate=-2.0, std_error=0.8, conf_low=-3.6, conf_high=-0.4, estimable=True)
    assert "2.0 points lower NPS (95% CI 0.4–3.6 points; moderate evidence)" in effect_sentence(pts, cat)


def test_headline_metrics_mark_only_changes_beyond_uncertainty(rendered: dict[str, str]):
    html = rendered["en"]
    rows = {m: row for m, row in re.findall(r'<th scope="row" class="">([^<]+)</th>(.*?)</tr>', html)}
    assert "clear fall" in rows["Complaints per 100 customer-quarters"]  # -0.8, CI of change excludes 0
    assert "clear" not in rows["NPS"]  # +2.8 with CIs of +-3.3: noise


def test_team_table_suppresses_small_cells(rendered: dict[str, str]):
    html = rendered["en"]
    teams = html.split('id="teams"')[1].split("</section>")[0]
    assert teams.count("—*") == 4  # Tianjin and Xi'an: NPS and CSAT with n < 5
    assert "fewer than 5 responses or customers" in teams
    assert "Xi&#39;an" in teams


# -- escaping -----------------------------------------------------------------------

def test_names_from_the_data_are_escaped(run_dir: Path):
    findings = json.loads((run_dir / "findings.json").read_text())
    for m in findings["metrics"]:
        if m.get("team_id") == "Wuhan":
            m["team_id"] = EVIL
    findings["source_description"] = f"Acme & Co {EVIL}"
    findings["data_quality"]["quarantined_by_reason"] = {EVIL: 3}
    (run_dir / "findings.json").write_text(json.dumps(findings))
    plans = pd.read_parquet(run_dir / "artifacts" / "plans.parquet")
    plans.loc[plans["team_id"] == "Wuhan", "team_id"] = EVIL
    plans.loc[plans["plan_id"] == "P-2025-HUNT", "plan_name"] = EVIL
    plans.to_parquet(run_dir / "artifacts" / "plans.parquet", index=False)
    km = pd.read_parquet(run_dir / "artifacts" / "km_by_plan.parquet")
    km.loc[km["plan_id"] == "P-2025-HUNT", "plan_name"] = EVIL
    km.to_parquet(run_dir / "artifacts" / "km_by_plan.parquet", index=False)
    for lang in ("en", "zh"):
        html = _render(run_dir, lang)
        assert EVIL not in html
        assert "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "Acme &amp; Co" in html
        assert EVIL in "".join(page_text(html).text)


# -- determinism --------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_same_inputs_give_identical_html(rendered: dict[str, str], lang: str):
    first = rendered[lang]
    second = _render(Path(rendered["run_dir"]), lang)
    assert len(STAMP.findall(first)) == 1
    assert STAMP.sub("", first) == STAMP.sub("", second)


# -- missing pieces and errors ------------------------------------------------------

def test_minimal_run_folder_renders_not_available(tmp_path: Path):
    (tmp_path / "findings.json").write_text(json.dumps(
        {"schema_version": 1, "quarter": "2025Q4", "as_of": "2025-12-31", "effects": [],
         "metrics": [], "recommendation": None}))
    html = _render(tmp_path, "en")
    assert "Effect estimates are not available in this run." in html
    assert "No weighting recommendation is made this quarter." in html
    assert "Survival curves by plan: not available in this run." in html
    assert html.count("Not available in this run.") >= 4  # metrics, plans, teams, DQ
    for section in ("switches", "weight", "claims", "heterogeneity", "gaming"):
        body = html.split(f'id="{section}"')[1].split("</section>")[0]
        assert "Not available in this run." in body, section
    assert "<img" not in html
    zh = _render(tmp_path, "zh")
    assert "本次运行中暂无此项" in zh
    for section in ("switches", "weight", "claims", "heterogeneity", "gaming"):
        assert "本次运行中暂无此项" in zh.split(f'id="{section}"')[1].split("</section>")[0]


def test_missing_findings_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InputError, match="findings.json"):
        render_report(tmp_path)


def test_unknown_language_is_rejected(run_dir: Path):
    with pytest.raises(ParameterError, match="en, zh"):
        render_report(run_dir, lang="fr")


def test_chinese_without_cjk_font_fails_clearly(run_dir: Path, monkeypatch):
    monkeypatch.setattr(plots, "find_cjk_font", lambda: None)
    with pytest.raises(plots.MissingFontError, match="fonts-noto-cjk"):
        render_report(run_dir, lang="zh")
    assert not (run_dir / "index.html").exists()


# -- archive ------------------------------------------------------------------------

def test_archive_lists_published_quarters_newest_first(tmp_path: Path):
    for quarter in ("2025Q3", "2025Q4"):
        folder = tmp_path / quarter
        shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py", "artifacts"))
        f = json.loads((folder / "findings.json").read_text())
        f["quarter"] = quarter
        # analysis/archive.py counts every effect row; keep it to the headline here.
        f["effects"] = [e for e in f["effects"] if e["model"] in HEADLINE_MODELS]
        (folder / "findings.json").write_text(json.dumps(f))
        (folder / "index.html").write_text("<html></html>")
    (tmp_path / ".staging" / "2026Q1-x").mkdir(parents=True)
    (tmp_path / "2026Q1").mkdir()  # no findings: not published
    out = update_archive(tmp_path)
    html = out.read_text()
    assert out == tmp_path / "index.html"
    assert html.index("Q4 2025") < html.index("Q3 2025")
    assert 'href="2025Q4/index.html"' in html and 'href="2025Q3/index.html"' in html
    assert "2026" not in html
    assert "NPS 31.2" in html and "NPS 28.4" in html
    assert "7 of 30" in html
    assert "2025年第4季度" in update_archive(tmp_path, lang="zh").read_text()


def test_empty_archive(tmp_path: Path):
    assert "No published quarters yet." in update_archive(tmp_path).read_text()


# -- decision support ---------------------------------------------------------------

NEW_SECTIONS = ("switches", "weight", "claims", "heterogeneity", "gaming")


def _section(html: str, section: str) -> str:
    return html.split(f'id="{section}"')[1].split("</section>")[0]


def test_fixture_has_non_headline_rows(findings: dict):
    models = {e["model"] for e in findings["effects"]}
    assert {"event_study_did2s", "event_study_pretrend", "logit_fe_ame", "logit_fe_controls",
            "logit_fe_by_tenure", "ols_fe_by_scope"} <= models
    assert set(HEADLINE_MODELS) <= models


def test_headline_chart_and_summary_use_only_headline_models(run_dir: Path, findings: dict,
                                                             monkeypatch):
    seen: list[list[dict]] = []
    real = report_charts.effects_chart

    def spy(effects, cat):
        seen.append(list(effects))
        return real(effects, cat)

    monkeypatch.setattr(report_charts, "effects_chart", spy)
    html = _render(run_dir, "en")
    assert len(seen) == 1 and len(seen[0]) == 30
    assert {e["model"] for e in seen[0]} <= set(HEADLINE_MODELS)
    headline_only = dict(findings, effects=[e for e in findings["effects"]
                                            if e["model"] in HEADLINE_MODELS])
    cat = Catalogue("en")
    assert summary_sentences(findings, cat) == summary_sentences(headline_only, cat)
    summary = _section(html, "summary")
    assert "22 weight–outcome pairs" in summary
    # The renewal x process effect is non-estimable in the headline model; the controls
    # variant's large clear estimate must not stand in for it.
    assert "Moving 10 points of plan weight from revenue to process is associated" not in summary


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_decision_section_is_present(rendered: dict[str, str], lang: str):
    html = rendered[lang]
    cat = Catalogue(lang)
    for section in NEW_SECTIONS:
        body = _section(html, section)
        assert f"<h2>{cat.data['sections'][section]}</h2>" in body
        assert cat.t("not_available") not in body, section
    assert 'id="chart-event_study"' in _section(html, "switches")
    assert 'id="chart-frontier"' in _section(html, "weight")
    if lang == "zh":
        for section in NEW_SECTIONS:
            heading = cat.data["sections"][section]
            assert cjk_share(heading) > 0.8, heading
        text = "".join(page_text(html).text)
        assert cjk_share(text) > 0.6


def test_switch_sentences_follow_the_pretrend_tests(rendered: dict[str, str]):
    body = _section(rendered["en"], "switches")
    items = dict(re.findall(r"<strong>(\w+):</strong> ([^<]+)</li>", body))
    assert set(items) == {"Churn", "Complaints", "CSAT", "NPS", "Bookings"}
    assert items["Churn"].startswith("no sign of different trends before the switch (p = 0.68)")
    # CSAT: joint p = 0.066 and one lead's interval excludes zero: a caution, not "no sign".
    assert "caution" in items["CSAT"] and "no sign" not in items["CSAT"]
    assert "none of 5 quarters shows a clear change" in items["Complaints"]
    assert "clearly lower bookings in 5 of 5 quarters (−11% to −16%)" in items["Bookings"]
    zh = _section(rendered["zh"], "switches")
    assert "切换前没有迹象表明趋势不同（p = 0.68）" in zh


def test_pretrend_rejection_is_a_caution(run_dir: Path):
    findings = json.loads((run_dir / "findings.json").read_text())
    for t in findings["event_study_pretrends"]:
        if t["outcome"] == "nps":
            t["p_value"], t["rejected_5pct"] = 0.004, True
    (run_dir / "findings.json").write_text(json.dumps(findings))
    body = _section(_render(run_dir, "en"), "switches")
    nps = re.search(r"<strong>NPS:</strong> ([^<]+)</li>", body).group(1)
    assert nps.startswith("caution: switching teams were already on a different path before "
                          "the switch (p = 0.004)")


def test_recommendation_section(rendered: dict[str, str]):
    body = _section(rendered["en"], "weight")
    assert "satisfaction weight of 25–35% does best on expected 3-year customer value" in body
    assert "peaks at a satisfaction weight of 30%" in body
    assert "How this was computed:" in body and "team cluster bootstrap" in body
    assert "满意度权重为25%–35%时预期三年客户价值表现最好" in _section(rendered["zh"], "weight")


def test_claims_ledger_badges(rendered: dict[str, str]):
    body = _section(rendered["en"], "claims")
    assert body.count("badge-supported") == 2 and body.count("badge-contradicted") == 1
    assert body.count("badge-untested") == 2
    assert "✓ Supported" in body and "✗ Contradicted" in body  # not colour alone
    zh = _section(rendered["zh"], "claims")
    assert "满意度应至少占方案权重的30%" in zh and "✓ 得到支持" in zh


def test_claims_text_is_escaped(run_dir: Path):
    findings = json.loads((run_dir / "findings.json").read_text())
    findings["claims"][0]["claim"] = EVIL
    findings["claims"][1]["evidence"] = f"A & B {EVIL}"
    findings["claims"][2]["verdict"] = EVIL
    findings["recommendation"]["note"] = EVIL
    (run_dir / "findings.json").write_text(json.dumps(findings))
    for lang in ("en", "zh"):
        html = _render(run_dir, lang)
        assert EVIL not in html and "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _section(html, "claims")
        assert "A &amp; B" in html
        assert EVIL in "".join(page_text(html).text)


def test_heterogeneity_names_the_correction(rendered: dict[str, str]):
    body = _section(rendered["en"], "heterogeneity")
    assert "Holm" in body and "over the 12 tests" in body
    assert body.count("<tr>") == 1 + 12
    assert "Satisfaction scored: per rep" in body and "first-term minus existing" in body
    assert '<td class="num clear">0.001</td>' in body  # NPS per rep: adjusted p 0.00147
    assert "Holm逐步校正" in _section(rendered["zh"], "heterogeneity")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_survey_gaming_counts_without_rep_ids(rendered: dict[str, str], findings: dict,
                                              lang: str):
    html = rendered[lang]
    body = _section(html, "gaming")
    if lang == "en":
        assert "flagged 2 of 140 reps scored" in body
        assert "8 reps with fewer than 5 CSAT answers were not scored" in body
    else:
        assert "140名销售人员中有2名被标记" in body
    for rep in findings["survey_gaming"]["flagged"]:
        assert rep["rep_id"] not in html
