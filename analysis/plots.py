"""Charts of the kpisat reports: one theme, one palette, one function per chart.

Every ``plot_*`` function takes tidy data and an optional ``ax`` and returns the axes;
none calls ``show()`` or ``savefig()``. Titles and labels are passed in by the caller
(the report takes them from the i18n catalogue). The theme — colours, fonts, sizes,
and the CJK font for Chinese charts — is set in :func:`theme` and nowhere else.

The palette is Okabe–Ito (colour-blind safe); point estimates whose interval excludes
zero are drawn filled, others hollow, so the distinction never relies on colour.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .errors import KpisatError

log = logging.getLogger(__name__)

#: Okabe & Ito (2008), in the order lines are drawn (yellow last: weak on white).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7",
             "#000000", "#F0E442")
INK = "#1f2328"
MUTED = "#6e7781"
GRID = "#d0d7de"
#: Fixed resolution of every chart PNG (part of byte-identical output).
DPI = 144
#: Width of a full-width chart in inches: ~900 CSS px at the report's column width.
FULL_WIDTH = 9.0

#: CJK families we know render Simplified Chinese, best first.
CJK_FAMILIES = (
    "Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei", "Noto Sans CJK", "Source Han Sans", "Droid Sans Fallback",
    "Sarasa Gothic SC", "Microsoft YaHei", "PingFang SC", "SimHei", "Heiti SC",
    "Noto Serif CJK SC", "Source Han Serif SC", "AR PL UMing", "AR PL UKai",
)
_CJK_FILE = re.compile(r"(cjk|sourcehan|wqy|droidsansfallback|simhei|msyh|pingfang|"
                       r"ukai|uming|sarasa|notosanssc|notoserifsc)", re.IGNORECASE)
_CJK_NAME = re.compile("|".join(re.escape(f.split(" SC")[0]) for f in CJK_FAMILIES),
                       re.IGNORECASE)
#: Debian packages that provide a CJK font (what CI must install for ``lang="zh"``).
CJK_APT_PACKAGES = ("fonts-noto-cjk", "fonts-wqy-zenhei")


class MissingFontError(KpisatError):
    """Chinese charts were requested but no CJK-capable font is installed."""


@dataclass(frozen=True)
class ChartFont:
    """The font the charts are drawn with."""

    family: str
    path: Path


def _register_system_cjk_files() -> None:
    """Add CJK font files to matplotlib's manager (its cache may predate their install)."""
    known = {Path(f.fname) for f in font_manager.fontManager.ttflist}
    for fname in sorted(font_manager.findSystemFonts()):
        path = Path(fname)
        if path not in known and _CJK_FILE.search(path.name):
            try:
                font_manager.fontManager.addfont(str(path))
            except (OSError, RuntimeError, ValueError) as exc:  # unreadable font file
                log.debug("skipping font %s: %s", path, exc)


def _rank(entry: font_manager.FontEntry) -> tuple[int, int, int, str]:
    name = entry.name.lower()
    family = next((i for i, f in enumerate(CJK_FAMILIES) if name.startswith(f.lower())),
                  len(CJK_FAMILIES))
    weight = entry.weight if isinstance(entry.weight, int) else 400
    return (family, abs(weight - 400), 0 if entry.style == "normal" else 1, entry.fname)


def find_cjk_font() -> ChartFont | None:
    """The best installed font that renders Simplified Chinese, or None.

    ``KPISAT_CJK_FONT`` (a font file path) overrides the search. Otherwise the
    system font folders are scanned for known CJK families (Noto Sans CJK, Source Han
    Sans, WenQuanYi, ...), preferring sans-serif, regular weight, SC faces.

    Returns
    -------
    ChartFont or None
        Family name and file of the chosen font.
    """
    override = os.environ.get("KPISAT_CJK_FONT")
    if override:
        font_manager.fontManager.addfont(override)
        props = font_manager.FontProperties(fname=override)
        return ChartFont(props.get_name(), Path(override))
    _register_system_cjk_files()
    entries = [f for f in font_manager.fontManager.ttflist
               if _CJK_NAME.search(f.name) or _CJK_FILE.search(Path(f.fname).name)]
    if not entries:
        return None
    best = min(entries, key=_rank)
    return ChartFont(best.name, Path(best.fname))


def chart_font(lang: str) -> ChartFont:
    """The font charts in ``lang`` are drawn with.

    Raises
    ------
    MissingFontError
        ``lang`` is "zh" and no CJK font is installed (charts would show boxes).
    """
    if lang == "zh":
        font = find_cjk_font()
        if font is None:
            raise MissingFontError(
                "Chinese charts need a CJK font and none is installed; install one, e.g. "
                f"`apt-get install -y {CJK_APT_PACKAGES[0]}` (or {CJK_APT_PACKAGES[1]}), "
                "or set KPISAT_CJK_FONT to a .ttf/.otf/.ttc file")
        return font
    family = "DejaVu Sans"
    return ChartFont(family, Path(font_manager.findfont(family, fallback_to_default=True)))


def theme_rc(font: ChartFont) -> dict[str, object]:
    """The rcParams of every kpisat chart drawn with ``font``."""
    return {
        "font.family": [font.family, "DejaVu Sans"],
        "font.size": 10.5,
        "axes.titlesize": 12.5,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.labelsize": 10.5,
        "axes.labelcolor": INK,
        "axes.edgecolor": MUTED,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.grid.axis": "x",
        "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
        "grid.color": GRID,
        "grid.linewidth": 0.7,
        "xtick.color": INK,
        "ytick.color": INK,
        "legend.frameon": False,
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "figure.facecolor": "white",
        "svg.hashsalt": "kpisat",
        "svg.fonttype": "path",
        "path.simplify": True,
        "axes.unicode_minus": True,
    }


@contextmanager
def theme(lang: str = "en") -> Iterator[ChartFont]:
    """Draw inside this context to use the kpisat theme; yields the chart font."""
    font = chart_font(lang)
    with plt.rc_context(theme_rc(font)):
        yield font


def used_font_file(ax: Axes) -> Path:
    """The font file matplotlib resolves for the text of ``ax`` (checks the theme took)."""
    props = ax.xaxis.label.get_fontproperties()
    return Path(font_manager.findfont(props, fallback_to_default=False))


def to_png_data_uri(fig: Figure) -> str:
    """Encode ``fig`` as a deterministic PNG ``data:`` URI and close it.

    Fixed dpi and no metadata (no software/version stamp) make the bytes depend only
    on what is drawn.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def plot_effects(data: pd.DataFrame, *, ax: Axes | None = None, title: str = "",
                 xlabel: str = "", insufficient_label: str = "insufficient data") -> Axes:
    """Dot-and-whisker plot of effects with their intervals, one row per term.

    Parameters
    ----------
    data : one row per term with ``label``, ``estimate``, ``conf_low``, ``conf_high``
        (already on the display scale, e.g. % change) and ``estimable``.
    title, xlabel : text for the panel.
    insufficient_label : written in place of a non-estimable effect.
    """
    ax = _axes(ax, (4.5, 2.6))
    rows = data.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    ax.axvline(0, color=MUTED, linewidth=1, zorder=1)
    for yi, row in zip(y, rows.itertuples(index=False)):
        if not row.estimable or pd.isna(row.estimate):
            ax.text(0, yi, insufficient_label, ha="center", va="center", color=MUTED,
                    fontsize=9, style="italic")
            continue
        clear = row.conf_low > 0 or row.conf_high < 0
        color = OKABE_ITO[0] if clear else MUTED
        ax.plot([row.conf_low, row.conf_high], [yi, yi], color=color, linewidth=2.2,
                solid_capstyle="round", zorder=2)
        ax.plot(row.estimate, yi, "o", markersize=7, zorder=3, color=color,
                markerfacecolor=color if clear else "white", markeredgewidth=1.8)
    ax.set_yticks(y, list(rows["label"]))
    ax.set_ylim(-0.6, len(rows) - 0.4)
    bounds = np.abs(rows[["conf_low", "conf_high"]].to_numpy(dtype=float))
    span = float(np.nanmax(bounds)) if np.isfinite(bounds).any() else 1.0
    ax.set_xlim(-span * 1.15, span * 1.15)
    ax.tick_params(axis="y", length=0)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel, fontsize=9.5)
    return ax


def plot_survival(data: pd.DataFrame, *, ax: Axes | None = None, title: str = "",
                  xlabel: str = "", ylabel: str = "") -> Axes:
    """Kaplan–Meier curves (in %) with 95% bands, one line per plan.

    Parameters
    ----------
    data : ``plan_name``, ``timeline``, ``survival``, and optionally ``ci_lower``,
        ``ci_upper`` (proportions 0–1).
    """
    ax = _axes(ax, (FULL_WIDTH, 4.2))
    for i, (name, curve) in enumerate(data.groupby("plan_name", sort=True)):
        curve = curve.sort_values("timeline")
        color = OKABE_ITO[i % len(OKABE_ITO)]
        if {"ci_lower", "ci_upper"} <= set(curve.columns):
            ax.fill_between(curve["timeline"], 100 * curve["ci_lower"],
                            100 * curve["ci_upper"], step="post", color=color, alpha=0.15,
                            linewidth=0)
        ax.step(curve["timeline"], 100 * curve["survival"], where="post", color=color,
                linewidth=2, label=str(name))
    ax.set_ylim(None, 100.5)
    ax.grid(axis="y")
    ax.legend(loc="lower left")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_frontier(data: pd.DataFrame, *, ax: Axes | None = None, recommended:
                  Sequence[float] | None = None, title: str = "", xlabel: str = "",
                  ylabel: str = "", band_label: str = "recommended") -> Axes:
    """The projected objective against a plan weight, with the recommended range shaded.

    Parameters
    ----------
    data : ``weight`` (0–1), ``objective``, optionally ``conf_low``, ``conf_high``.
    recommended : (low, high) weights (0–1) of the recommended range.
    """
    ax = _axes(ax, (FULL_WIDTH, 3.8))
    data = data.sort_values("weight")
    x = 100 * data["weight"]
    if recommended is not None:
        ax.axvspan(100 * recommended[0], 100 * recommended[1], color=OKABE_ITO[2],
                   alpha=0.15, linewidth=0, label=band_label)
    if {"conf_low", "conf_high"} <= set(data.columns):
        ax.fill_between(x, data["conf_low"], data["conf_high"], color=OKABE_ITO[0],
                        alpha=0.15, linewidth=0)
    ax.plot(x, data["objective"], color=OKABE_ITO[0], linewidth=2.2, marker="o",
            markersize=4)
    ax.grid(axis="y")
    # Money-sized objectives: plain thousands separators, never a "1e6" offset.
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(loc="lower center")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_plan_weights(data: pd.DataFrame, *, ax: Axes | None = None,
                      labels: dict[str, str] | None = None, title: str = "",
                      xlabel: str = "") -> Axes:
    """Stacked horizontal bars of each plan's KPI weights (in %).

    Parameters
    ----------
    data : one row per plan, ``plan_name`` and one column per weight (0–1).
    labels : weight column -> legend label; its order is the stacking order.
    """
    labels = labels or {}
    cols = [c for c in labels if c in data.columns]
    ax = _axes(ax, (FULL_WIDTH, 0.55 * len(data) + 1.6))
    rows = data.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    left = np.zeros(len(rows))
    for i, col in enumerate(cols):
        width = 100 * rows[col].to_numpy(dtype=float)
        color = OKABE_ITO[i % len(OKABE_ITO)]
        ax.barh(y, width, left=left, color=color, label=labels[col], height=0.62,
                edgecolor="white", linewidth=0.8)
        for yi, lft, w in zip(y, left, width):
            if w >= 7:
                ax.text(lft + w / 2, yi, f"{w:.0f}", ha="center", va="center", fontsize=9,
                        color="white" if i in (0, 2, 3, 5, 6) else INK)
        left += width
    ax.set_yticks(y, [str(n) for n in rows["plan_name"]])
    ax.set_xlim(0, 100)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    # Legend above the bars, in stacking order, so it never meets the axis label.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(len(cols), 6), fontsize=9,
              handlelength=1.2, columnspacing=1.2, borderaxespad=0.3)
    ax.set_title(title, pad=30)
    ax.set_xlabel(xlabel)
    return ax


def plot_event_study(data: pd.DataFrame, *, ax: Axes | None = None, title: str = "",
                     xlabel: str = "", ylabel: str = "", pre_label: str = "before the switch",
                     post_label: str = "after the switch") -> Axes:
    """Event-study chart: estimates by event time with 95% intervals around zero.

    Parameters
    ----------
    data : one row per event time with ``event_time`` (int; < 0 are leads),
        ``estimate``, ``conf_low``, ``conf_high`` (display scale) and ``estimable``.
    pre_label, post_label : legend text of the shaded pre-period and the after points.

    Leads are drawn grey on a shaded band (the pre-period); quarters after the switch
    in blue, filled when their interval excludes zero, hollow otherwise.
    """
    ax = _axes(ax, (4.5, 2.8))
    rows = data[data["estimable"]].sort_values("event_time")
    times = sorted(data["event_time"].unique())
    leads = [e for e in times if e < 0]
    if leads:
        ax.axvspan(min(leads) - 0.5, -0.5, color=GRID, alpha=0.45, linewidth=0,
                   label=pre_label, zorder=0)
    ax.axhline(0, color=MUTED, linewidth=1, zorder=1)
    for row in rows.itertuples(index=False):
        pre = row.event_time < 0
        clear = row.conf_low > 0 or row.conf_high < 0
        color = MUTED if pre else OKABE_ITO[0]
        ax.plot([row.event_time, row.event_time], [row.conf_low, row.conf_high], color=color,
                linewidth=2.0, solid_capstyle="round", zorder=2)
        ax.plot(row.event_time, row.estimate, "o", markersize=6, zorder=3, color=color,
                markerfacecolor=color if clear else "white", markeredgewidth=1.6,
                label=None if pre else post_label)
    ax.set_xticks(times, [f"{e:+d}" if e else "0" for e in times])
    ax.set_xlim(min(times) - 0.5, max(times) + 0.5)
    ax.grid(axis="x", visible=False)
    ax.grid(axis="y")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    return ax
