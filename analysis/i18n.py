"""Message catalogues and number/date formats of the leadership report.

One YAML catalogue per language lives in ``analysis/i18n/<lang>.yaml``; every string
the report shows (headings, sentences, table headers, chart titles, axis labels,
number and date patterns) comes from there. Keys are dotted paths
(``"sections.summary"``); values are :meth:`str.format` templates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from .errors import ParameterError
from .quarters import parse_quarter

log = logging.getLogger(__name__)

Lang = Literal["en", "zh"]
LANGS: tuple[str, ...] = get_args(Lang)
CATALOGUE_DIR = Path(__file__).resolve().parent / "i18n"


def check_lang(lang: str) -> Lang:
    """Return ``lang`` if it is a supported language, else raise ParameterError."""
    if lang not in LANGS:
        raise ParameterError(f"language {lang!r} is not supported; use one of {', '.join(LANGS)}")
    return lang  # type: ignore[return-value]


@lru_cache(maxsize=None)
def _load(lang: str) -> dict[str, Any]:
    path = CATALOGUE_DIR / f"{lang}.yaml"
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@dataclass(frozen=True)
class Catalogue:
    """The strings and formats of one language.

    Parameters
    ----------
    lang : "en" or "zh".

    Examples
    --------
    >>> cat = Catalogue("zh")
    >>> cat.quarter("2025Q4")
    '2025年第4季度'
    """

    lang: str

    def __post_init__(self) -> None:
        check_lang(self.lang)

    @property
    def data(self) -> dict[str, Any]:
        """The raw catalogue mapping."""
        return _load(self.lang)

    def raw(self, key: str, default: Any = None) -> Any:
        """The catalogue value at dotted ``key`` (a string, list or mapping)."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not None:
                    return default
                raise KeyError(f"catalogue {self.lang}.yaml has no key {key!r}")
            node = node[part]
        return node

    def t(self, key: str, **kw: Any) -> str:
        """The message at ``key``, formatted with ``kw``."""
        return str(self.raw(key)).format(**kw)

    def label(self, group: str, name: str) -> str:
        """Human label of ``name`` in ``group`` (outcomes, terms, metrics, tables...).

        Unknown names fall back to the name itself, so new data never crashes a report.
        """
        labels = self.data.get(group, {})
        value = labels.get(name, name)
        return value["label"] if isinstance(value, dict) else str(value)

    # -- numbers -----------------------------------------------------------
    def number(self, x: float | None, digits: int = 0) -> str:
        """``x`` with thousands separators and ``digits`` decimals; "—" if missing."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return self.t("fmt.missing")
        return f"{x:,.{digits}f}"

    def signed(self, x: float, digits: int = 1) -> str:
        """``x`` with an explicit sign (true minus sign)."""
        s = f"{abs(x):,.{digits}f}"
        if round(x, digits) > 0:
            return "+" + s
        if round(x, digits) < 0:
            return "\u2212" + s
        return s

    def pct(self, x: float, digits: int = 0) -> str:
        """A percentage already in percent units: ``12`` -> ``"12%"``."""
        return self.t("fmt.pct", x=f"{x:,.{digits}f}")

    def pct_range(self, lo: float, hi: float, digits: int = 0) -> str:
        """A range of percentages: ``6–18%`` (en) / ``6%–18%`` (zh)."""
        return self.t("fmt.pct_range", lo=f"{lo:,.{digits}f}", hi=f"{hi:,.{digits}f}")

    def num_range(self, lo: float, hi: float, digits: int = 1) -> str:
        """A range of plain numbers: ``0.1–0.4``."""
        return self.t("fmt.num_range", lo=self.signed(lo, digits), hi=self.signed(hi, digits))

    # -- dates -------------------------------------------------------------
    def quarter(self, label: str) -> str:
        """``2025Q4`` -> ``Q4 2025`` (en) / ``2025年第4季度`` (zh)."""
        year, q = parse_quarter(label)
        return self.t("fmt.quarter", year=year, q=q)

    def date(self, day: date | datetime | str | None) -> str:
        """A calendar date in the language's long form; "—" if missing."""
        if day is None or day == "":
            return self.t("fmt.missing")
        if isinstance(day, str):
            try:
                day = datetime.fromisoformat(day.replace("Z", "+00:00"))
            except ValueError:
                log.warning("not an ISO date: %r; shown as is", day)
                return day
        months = self.raw("fmt.months")
        return self.t("fmt.date", year=day.year, month=months[day.month - 1],
                      m=day.month, day=day.day)

    def datetime(self, stamp: datetime | str | None) -> str:
        """A timestamp as ``<date> HH:MM UTC±hh:mm`` (or the raw string if unparsable)."""
        if stamp is None or stamp == "":
            return self.t("fmt.missing")
        if isinstance(stamp, str):
            try:
                stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                return stamp
        tz = stamp.strftime("%z")
        tz = f" UTC{tz[:3]}:{tz[3:]}" if tz else ""
        return f"{self.date(stamp)} {stamp:%H:%M}{tz}"
