"""Chart functions: the ``plot_*(data, *, ax=None) -> Axes`` contract, theme, fonts, bytes."""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex

from analysis import plots

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "artifacts"

EFFECTS = pd.DataFrame({
    "label": ["new customers", "satisfaction", "process"],
    "estimate": [4.0, -11.1, float("nan")],
    "conf_low": [-3.0, -16.4, float("nan")],
    "conf_high": [11.0, -5.5, float("nan")],
    "estimable": [True, True, False],
})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _draw_all(lang: str = "en") -> list[Axes]:
    with plots.theme(lang):
        return [
            plots.plot_effects(EFFECTS, title="Churn", xlabel="%"),
            plots.plot_survival(pd.read_parquet(FIXTURE / "km_by_plan.parquet")),
            plots.plot_frontier(pd.read_parquet(FIXTURE / "frontier.parquet"),
                                recommended=(0.25, 0.35)),
            plots.plot_plan_weights(pd.read_parquet(FIXTURE / "plans.parquet")
                                    .drop_duplicates("plan_id"),
                                    labels={"w_revenue": "revenue", "w_satisfaction": "sat"}),
        ]


def test_every_plot_returns_axes_and_draws_on_a_given_ax():
    for ax in _draw_all():
        assert isinstance(ax, Axes)
    fig, ax = plt.subplots()
    assert plots.plot_effects(EFFECTS, ax=ax) is ax


def test_non_estimable_effect_is_text_not_a_point():
    with plots.theme("en"):
        ax = plots.plot_effects(EFFECTS, insufficient_label="insufficient data")
    assert [t.get_text() for t in ax.texts] == ["insufficient data"]
    # Two drawn effects: a line and a marker each, plus the zero line.
    assert len(ax.lines) == 2 * 2 + 1


def test_clear_effects_are_filled_unclear_hollow():
    with plots.theme("en"):
        ax = plots.plot_effects(EFFECTS)
    markers = [ln for ln in ax.lines if ln.get_marker() == "o"]
    faces = [to_hex(m.get_markerfacecolor()) for m in markers]
    assert faces == ["#ffffff", plots.OKABE_ITO[0].lower()]


def test_palette_is_okabe_ito():
    with plots.theme("en"):
        ax = plots.plot_survival(pd.read_parquet(FIXTURE / "km_by_plan.parquet"))
    colours = {to_hex(ln.get_color()).upper() for ln in ax.lines}
    assert colours <= set(plots.OKABE_ITO)


def test_chinese_theme_draws_with_the_cjk_font_file():
    font = plots.chart_font("zh")
    assert plots._CJK_FILE.search(font.path.name), font
    for ax in _draw_all("zh"):
        assert plots.used_font_file(ax) == font.path


def test_no_cjk_font_raises_instead_of_drawing_boxes(monkeypatch):
    monkeypatch.setattr(plots, "find_cjk_font", lambda: None)
    with pytest.raises(plots.MissingFontError, match="apt-get install"):
        plots.chart_font("zh")
    assert plots.chart_font("en").family == "DejaVu Sans"


def test_png_bytes_are_deterministic_and_unstamped():
    def draw() -> bytes:
        with plots.theme("en"):
            ax = plots.plot_effects(EFFECTS, title="Churn")
            uri = plots.to_png_data_uri(ax.figure)
        return base64.b64decode(uri.split(",", 1)[1])

    first, second = draw(), draw()
    assert first == second
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"matplotlib" not in first.lower()  # no Software metadata
