"""Parse the values real CRM exports contain: amounts, dates, booleans, integers, ids.

Every parser takes one raw cell (``str``, a number or a date from a spreadsheet, or
``None``) and returns the canonical value, ``None`` for a blank cell, or raises
:class:`ParseError` whose ``reason`` is a short category ("not an amount") used to
count quarantined rows. Parsers never guess silently: an ambiguous slash date raises
:class:`AmbiguousDateError`, which the caller turns into a fatal error because the fix
(declaring the column's format) belongs in the mapping, not in the data.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


class ParseError(ValueError):
    """A raw value that cannot be read as its canonical kind."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AmbiguousDateError(ParseError):
    """A ``dd/dd/yyyy`` date whose day and month could be either way round."""


class FormulaError(ValueError):
    """A spreadsheet formula cell without a cached value (raised by the reader's marker)."""


_BLANKS = {"", "-", "--", "—", "n/a", "na", "null", "none", "-none-", "nan", "#n/a", "无", "空"}


def clean_text(value: object) -> str | None:
    """Return the cell as stripped text, or ``None`` when it is blank.

    Non-breaking and ideographic spaces count as blank space. Integral floats (a
    spreadsheet's ``123.0``) are written without the ``.0``.
    """
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).replace("\u00a0", " ").replace("\u3000", " ").replace("\ufeff", "").strip()
    return text or None


def _normal(value: object) -> str | None:
    """NFKC-normalised text (full-width digits and symbols become ASCII), or ``None``."""
    text = clean_text(value)
    if text is None:
        return None
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").strip()
    return None if text.casefold() in _BLANKS else text


def value_key(value: object) -> str | None:
    """The key a raw value is looked up by in a mapping's value map (case-folded, NFKC)."""
    text = _normal(value)
    return None if text is None else re.sub(r"\s+", " ", text).casefold()


# --------------------------------------------------------------------------- ids

_SFDC_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
_SFDC_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_id18(id15: str) -> str:
    """Extend a 15-character Salesforce id to its 18-character case-safe form.

    Each of the three 5-character chunks contributes one suffix character: bit *i* is
    set when character *i* of the chunk is an upper-case letter, and the 5-bit number
    indexes ``A-Z0-5``.
    """
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _SFDC_SUFFIX[bits]
    return id15 + suffix


def parse_id(value: object, *, kind: str | None = None) -> str | None:
    """Return an identifier as a string, never a number (leading zeros are kept).

    Parameters
    ----------
    value : the raw cell.
    kind : ``"salesforce"`` to normalise 15-character ids to 18 characters so both
        forms join; ``None`` to keep the id as written.
    """
    text = clean_text(value)
    if text is None:
        return None
    if kind == "salesforce":
        if not _SFDC_ID.match(text):
            raise ParseError("not a Salesforce id")
        return salesforce_id18(text) if len(text) == 15 else text[:15] + text[15:].upper()
    return text


def parse_text(value: object) -> str | None:
    """Return free text stripped, ``None`` when blank."""
    return clean_text(value)


# ----------------------------------------------------------------------- numbers

_CURRENCY = re.compile(r"^(?:US\$|RMB|CNY|USD|EUR|GBP|HKD|[¥$€£元])\s*|\s*(?:RMB|CNY|USD|EUR|GBP|HKD|元|[¥$€£])$",
                       re.IGNORECASE)
_UNITS = {"万": 1e4, "萬": 1e4, "亿": 1e8, "億": 1e8, "千": 1e3, "百万": 1e6}
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_amount(value: object, *, decimal: str = ".") -> float | None:
    """Return a money amount as a float.

    Accepts currency symbols and codes (``¥ ￥ $ RMB USD 元``), thousands separators,
    Chinese units (``1.2万`` = 12000, ``3亿``), accounting negatives ``(1,000)``, a
    leading or trailing minus and full-width digits (``１２３``).

    Parameters
    ----------
    value : the raw cell.
    decimal : the decimal separator of the export: ``"."`` (thousands ``,``) or
        ``","`` (thousands ``.`` or space).
    """
    if isinstance(value, bool):
        raise ParseError("not an amount")
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    text = _normal(value)
    if text is None:
        return None
    text = text.replace(" ", "")
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    for _ in range(2):  # currency may sit outside or inside the sign
        text = _CURRENCY.sub("", text)
        if text.startswith("-") or text.endswith("-"):
            negative, text = not negative, text.strip("-")
    scale = 1.0
    for unit, factor in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(unit):
            scale, text = factor, text[: -len(unit)]
            break
    text = _CURRENCY.sub("", text)
    if decimal == ",":
        text = text.replace(".", "").replace(",", ".")
    else:
        text = text.replace(",", "")
    if not _NUMBER.match(text):
        raise ParseError("not an amount")
    number = float(text) * scale
    return round(-number if negative else number, 6)


def parse_int(value: object) -> int | None:
    """Return a whole number (``4``, ``4.0``, ``４``); a fraction is an error."""
    if isinstance(value, bool):
        raise ParseError("not a whole number")
    number = parse_amount(value) if not isinstance(value, (int, float)) else value
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return None
    if float(number) != int(number):
        raise ParseError("not a whole number")
    return int(number)


# ---------------------------------------------------------------------- booleans

TRUE_WORDS = frozenset({"true", "t", "1", "yes", "y", "是", "对", "√", "✓", "✔", "on"})
FALSE_WORDS = frozenset({"false", "f", "0", "no", "n", "否", "不是", "×", "✗", "off"})


def parse_bool(value: object) -> bool | None:
    """Return ``True``/``False`` for TRUE/1/是/Y/yes and FALSE/0/否/N/no; ``None`` if blank."""
    if isinstance(value, bool):
        return value
    key = value_key(value)
    if key is None:
        return None
    if key in TRUE_WORDS:
        return True
    if key in FALSE_WORDS:
        return False
    raise ParseError("not a yes/no value")


# ------------------------------------------------------------------------- dates

_EXCEL_EPOCH = date(1899, 12, 30)
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                  r"\s*(Z|[+-]\d{2}:?\d{2})?)?$")
_YMD = re.compile(r"^(\d{4})\s*[/.年]\s*(\d{1,2})\s*[/.月]\s*(\d{1,2})\s*日?(?:[T\s].*)?$")
_XYY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[T\s].*)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SERIAL = re.compile(r"^\d{4,5}(\.\d+)?$")


def excel_serial_date(serial: float) -> date:
    """Return the date of an Excel (1900 system) serial number such as ``45356``."""
    if not 1 <= serial < 2958466:
        raise ParseError("not a date")
    return _EXCEL_EPOCH + timedelta(days=int(serial))


def _make(y: int | str, m: int | str, d: int | str) -> date:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        raise ParseError("not a valid calendar date") from None


def _iso(match: re.Match, tz: str | None) -> date:
    y, m, d, hh, mm, ss, offset = match.groups()
    day = _make(y, m, d)
    if offset is None or tz is None:
        return day
    stamp = datetime.fromisoformat(f"{day.isoformat()}T{int(hh):02d}:{mm}:{ss or '00'}"
                                   f"{'+00:00' if offset == 'Z' else offset}")
    return stamp.astimezone(ZoneInfo(tz)).date()


def _with_formats(text: str, formats: tuple[str, ...]) -> date | None:
    head = re.split(r"[T\s]", text, maxsplit=1)[0]
    for candidate in (text, head):
        for fmt in formats:
            try:
                return datetime.strptime(candidate, fmt).date()
            except ValueError:
                continue
    return None


def parse_date(value: object, *, formats: tuple[str, ...] = (), tz: str | None = None) -> date | None:
    """Return a calendar date.

    Spreadsheet dates and Excel serials, ISO dates and timestamps
    (``2024-03-05T10:00:00.000+0000``) are always understood. Then the declared
    ``formats`` are tried (on the whole text, then on its date part before a time);
    without declared formats, ``2024/3/5``, ``2024.03.05``, ``2024年3月5日`` and
    ``20240305`` are read year first, and ``dd/dd/yyyy`` only when one part is above 12.

    Parameters
    ----------
    value : the raw cell.
    formats : ``strptime`` formats declared for the column, e.g. ``("%m/%d/%Y",)``.
    tz : time zone (e.g. ``"Asia/Shanghai"``) a timestamp with an explicit offset is
        converted to before its date is taken; ``None`` keeps the date as written.

    Raises
    ------
    AmbiguousDateError : ``03/05/2024`` with no declared format.
    ParseError : anything else that is not a date.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if isinstance(value, float) and math.isnan(value) else excel_serial_date(value)
    text = _normal(value)
    if text is None:
        return None
    if m := _ISO.match(text):
        return _iso(m, tz)
    if formats:
        found = _with_formats(text, formats)
        if found is None:
            raise ParseError("not a date in the declared format")
        return found
    if m := _YMD.match(text):
        return _make(*m.groups())
    if m := _COMPACT.match(text):
        return _make(*m.groups())
    if m := _XYY.match(text):
        a, b, y = (int(g) for g in m.groups())
        if a <= 12 and b <= 12 and a != b:
            raise AmbiguousDateError("ambiguous day/month order")
        return _make(y, b, a) if a > 12 else _make(y, a, b)
    if _SERIAL.match(text):
        return excel_serial_date(float(text))
    raise ParseError("not a date")
