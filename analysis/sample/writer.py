"""Byte-stable CSV and JSON output: fixed column order, cents, ISO dates, true/false."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import EFFECT_PER, OUTCOMES, TERMS
from . import params as P

_EPOCH = np.datetime64(P.START.isoformat(), "D")


def iso(days: np.ndarray) -> np.ndarray:
    """ISO dates of day indices; ``NEVER`` becomes the empty string.

    Parameters
    ----------
    days : numpy.ndarray
        Day indices since ``params.START``.

    Returns
    -------
    numpy.ndarray
        Strings.
    """
    days = np.asarray(days, dtype=np.int64)
    null = days >= P.NEVER
    out = (_EPOCH + np.where(null, 0, days).astype("timedelta64[D]")).astype(str).astype(object)
    out[null] = ""
    return out


def ids(prefix: str, index: np.ndarray, n: int) -> np.ndarray:
    """Identifiers ``prefix`` + zero-padded ``index + 1``; negative index gives ''.

    Parameters
    ----------
    prefix : str
    index : numpy.ndarray
        0-based positions.
    n : int
        Size of the id space (sets the padding width, at least 5 digits).

    Returns
    -------
    numpy.ndarray
    """
    index = np.asarray(index, dtype=np.int64)
    width = max(5 if prefix not in ("T", "R") else 2 + (prefix == "R"), len(str(n)))
    body = np.char.zfill((np.maximum(index, 0) + 1).astype(str), width)
    out = np.char.add(prefix, body).astype(object)
    out[index < 0] = ""
    return out


def money(cents: np.ndarray) -> np.ndarray:
    """Exact decimal strings of non-negative integer cents (``-1`` gives '')."""
    cents = np.asarray(cents, dtype=np.int64)
    c = np.maximum(cents, 0)
    out = np.char.add(np.char.add((c // 100).astype(str), "."),
                      np.char.zfill((c % 100).astype(str), 2)).astype(object)
    out[cents < 0] = ""
    return out


def ints(values: np.ndarray) -> np.ndarray:
    """Integer strings; negative values (the null marker) give ''."""
    values = np.asarray(values, dtype=np.int64)
    out = values.astype(str).astype(object)
    out[values < 0] = ""
    return out


def bools(values: np.ndarray) -> np.ndarray:
    """``true`` / ``false``."""
    return np.where(np.asarray(values, dtype=bool), "true", "false").astype(object)


def _field(value: str) -> str:
    """Quote a CSV field when it needs it (RFC 4180)."""
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> int:
    """Write string columns in the given order with a header; return the row count.

    Lines end with ``\n``; null is the empty field; fields are quoted only when they
    contain a comma, a quote or a line break.
    """
    cols = []
    for v in columns.values():
        v = [str(x) for x in np.asarray(v, dtype=object)]
        if any(any(ch in x for ch in ',"\n\r') for x in set(v)):
            v = [_field(x) for x in v]
        cols.append(v)
    n = len(cols[0]) if cols else 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(_field(k) for k in columns) + "\n")
        for start in range(0, n, 200_000):
            chunk = zip(*(c[start:start + 200_000] for c in cols))
            fh.write("".join(",".join(row) + "\n" for row in chunk))
    return n


NOTES = (
    "Effects are per 0.10 of plan weight moved from w_revenue to the term (x = w/0.10). "
    "bookings: log(1+B) = a_rep + d_q + beta_b*x(wbar) + N(0, sigma) for every rep-quarter "
    "with any employed day, wbar the time-weighted daily mean of the team's plan weights; B is "
    "rounded to cents and split across the cell's won deals, so the truth is exact up to cent "
    "rounding. csat/nps: per rep-quarter, each response is drawn from a base distribution "
    "exponentially tilted so that its mean CSAT (resp. 100*(P(9-10)-P(0-6))) equals "
    "a_rep + d_q + beta*x(wbar) exactly; response is independent of the score given rep, so "
    "the response-weighted rep+quarter FE regression is unbiased. complaints: count ~ "
    "Poisson(E*exp(a_rep + d_q + beta_p*x(wbar))) with E the exact exposure of the derived "
    "table (owned customer-days / days in quarter), so the rep+quarter FE Poisson with log E "
    "offset is exact. churn/renewal: one linear predictor eta = d_q + beta_c*x(plan of the "
    "owning team that day) (team effects enter the baselines): early cancellation from the "
    "hazard h_team*exp(eta) on contract days start+1..end-1 (constant within a day, simulated "
    "exactly by inverting the cumulative hazard), and non-renewal at each end_date with "
    "probability expit(c_team + eta(end_date)). Contracts last 365 days, so renewal decisions "
    "fall on the same tenures (364, 729, ...) for everyone. The renewal logit with team and "
    "quarter-of-end_date fixed effects is therefore exactly -beta_c (the renewal rows are "
    "effects on the odds of renewal). The Cox truth beta_c is exact for the continuous "
    "cancellation route (up to the daily resolution of dates) and, for the renewal-day ties, "
    "exact under the discrete-logistic (Cox 1972) partial likelihood which Efron's method "
    "approximates; with ~10% non-renewal an Efron fit may be pulled slightly toward zero on "
    "those ties. Churn depends on nothing else (no segment or rep effect), so there is no "
    "omitted frailty. Team quality u_team ~ N(0,1) improves every outcome and makes teams adopt "
    "satisfaction-heavy plans earlier; every outcome has a common quarter trend d_q: comparisons "
    "without team/rep and quarter terms are biased. A cancelled contract whose end_date is "
    "after as_of keeps outcome 'pending' (the churn is its cancel_date)."
)


def ground_truth(seed: int, scale: float, *, null_effects: bool = False) -> dict:
    """The ``ground_truth.json`` document: 30 true effects plus notes.

    With ``null_effects`` every effect is 0 and the document says so
    (``"null_effects": true``); otherwise the document is unchanged.
    """
    table = P.true_effects(null_effects)
    effects = [{"outcome": o, "term": t, "scale": P.EFFECT_SCALES[o], "per": EFFECT_PER,
                "estimate": table[o][t]} for o in OUTCOMES for t in TERMS]
    doc = {"schema_version": 1, "seed": seed, "scale": scale, "as_of": P.AS_OF.isoformat(),
           "effects": effects, "notes": NOTES}
    if null_effects:
        doc["null_effects"] = True
        doc["notes"] = "All true plan effects are zero (null_effects=True). " + NOTES
    return doc


def write_json(path: Path, doc: dict) -> None:
    """Write JSON with a fixed layout and a trailing newline."""
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
