"""Privacy: keyed pseudonyms for people and customers, and small-cell suppression.

Two independent safeguards for what leaves the analysis:

* ``pseudonymise_tables(tables, key)`` replaces every rep and customer identifier
  (``rep_id``, ``acquiring_rep_id``, ``customer_id``) in every table by a keyed
  HMAC-SHA256 pseudonym (``r_…``/``c_…``), the same id giving the same pseudonym in
  every table, so joins still work. Without the key a pseudonym cannot be traced back
  or recomputed from a guessed id (a plain hash could). The key comes only from the
  environment variable ``KPISAT_PSEUDONYM_KEY``; there is no default key.
* ``suppress_small_cells(df, count_col, value_cols)`` blanks the values of cells
  counting fewer than ``config.SMALL_CELL`` units and, where a group's total is shown
  next to them, one more cell (complementary suppression) so a blanked value cannot be
  recovered by subtracting the others from the total.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import config
from .errors import ParameterError

#: Environment variable holding the pseudonymisation key.
KEY_ENV = "KPISAT_PSEUDONYM_KEY"
#: A shorter key is refused (it could be guessed).
MIN_KEY_BYTES = 16
#: Identifier columns and the prefix of their pseudonyms (a rep keeps one pseudonym
#: whether it appears as ``rep_id`` or ``acquiring_rep_id``).
ID_PREFIX = {"rep_id": "r_", "acquiring_rep_id": "r_", "customer_id": "c_"}
#: Hex digits kept of the HMAC (64 bits: collisions are negligible below ~10^8 ids).
DIGEST_HEX = 16
#: Reason written for each kind of suppressed cell.
PRIMARY, COMPLEMENTARY = "small cell", "complementary"


def pseudonym_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key from ``KPISAT_PSEUDONYM_KEY``.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    bytes
        The key, UTF-8 encoded.

    Raises
    ------
    ParameterError
        When the variable is unset, empty or shorter than ``MIN_KEY_BYTES``: there is
        never a default key.
    """
    env = os.environ if environ is None else environ
    value = env.get(KEY_ENV, "")
    if not value.strip():
        raise ParameterError(
            f"pseudonymisation is on but {KEY_ENV} is not set; set it to a secret of at "
            f"least {MIN_KEY_BYTES} characters (e.g. `export {KEY_ENV}=$(openssl rand -hex 32)`) "
            "and keep it to map pseudonyms consistently across runs")
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ParameterError(f"{KEY_ENV} is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
                             "(e.g. `openssl rand -hex 32`)")
    return key


def pseudonymise(value: str, key: bytes, *, prefix: str = "") -> str:
    """The keyed pseudonym of one identifier.

    Parameters
    ----------
    value : str
        The identifier.
    key : bytes
        Secret key (``pseudonym_key()``).
    prefix : str
        Prepended to the digest, e.g. ``"r_"`` for reps, ``"c_"`` for customers.

    Returns
    -------
    str
        ``prefix`` + the first ``DIGEST_HEX`` hex digits of HMAC-SHA256(key, value).
    """
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ParameterError("the pseudonymisation key must be non-empty bytes")
    digest = hmac.new(bytes(key), str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:DIGEST_HEX]


def pseudonymise_tables(tables: Mapping[str, pd.DataFrame], key: bytes, *,
                        columns: Mapping[str, str] = ID_PREFIX,
                        seen: dict[str, dict[str, str]] | None = None
                        ) -> dict[str, pd.DataFrame]:
    """Every table with its rep and customer identifiers replaced by pseudonyms.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Typed tables (validation output or an as-of view); not modified.
    key : bytes
        Secret key.
    columns : mapping of column name to prefix
        Which columns to replace (default ``ID_PREFIX``).
    seen : the ids already pseudonymised by earlier calls, by prefix (updated); for a
        caller that pseudonymises one table at a time, so that the check below covers
        the ids of every table.

    Returns
    -------
    dict of str to DataFrame
        New frames, same columns, dtypes and row order; nulls stay null.

    Raises
    ------
    ParameterError
        On the (astronomically unlikely) event that two ids share a pseudonym.
    """
    mapping: dict[str, dict[str, str]] = {} if seen is None else seen
    out = {}
    for name, df in tables.items():
        df = df.copy()
        for col, prefix in columns.items():
            if col in df.columns:
                df[col] = _map_column(df[col], key, prefix, mapping.setdefault(prefix, {}))
        out[name] = df
    for prefix, m in mapping.items():
        if len(set(m.values())) != len(m):
            raise ParameterError(f"two identifiers share a {prefix}pseudonym; raise DIGEST_HEX")
    return out


def pseudonymise_quarantine(quarantine: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """The quarantine list with rep and customer identifiers pseudonymised.

    ``id`` of rows from ``reps``/``customers`` and ``raw_value`` of cells in an
    identifier column are replaced; everything else is kept.
    """
    q = quarantine.copy()
    owner = {"reps": "rep_id", "customers": "customer_id"}
    for table, col in owner.items():
        rows = (q["table"] == table) & q["id"].notna()
        q.loc[rows, "id"] = [pseudonymise(v, key, prefix=ID_PREFIX[col]) for v in q.loc[rows, "id"]]
    for col, prefix in ID_PREFIX.items():
        rows = (q["column"] == col) & q["raw_value"].notna()
        q.loc[rows, "raw_value"] = [pseudonymise(v, key, prefix=prefix)
                                    for v in q.loc[rows, "raw_value"]]
    return q


def _map_column(values: pd.Series, key: bytes, prefix: str, seen: dict[str, str]) -> pd.Series:
    distinct = [v for v in pd.unique(values.dropna()) if v not in seen]
    for v in distinct:
        seen[v] = pseudonymise(v, key, prefix=prefix)
    return values.map(lambda v: seen[v] if not _is_null(v) else None).astype(object)


def _is_null(v) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


# --------------------------------------------------------------------------- small cells


def suppress_small_cells(df: pd.DataFrame, count_col: str, value_cols: Sequence[str],
                         threshold: int = config.SMALL_CELL, *,
                         group_cols: Iterable[str] = (), total_shown: bool = True
                         ) -> pd.DataFrame:
    """Blank the values of small cells, with complementary suppression.

    A cell (row) is suppressed when its count is below ``threshold`` (or unknown), or
    when it is already marked ``suppressed``. Where the group's total is shown
    (``total_shown``) and exactly one cell of a group is suppressed, the unsuppressed
    cell with the next smallest count is suppressed too, so the hidden value cannot be
    recovered as total minus the others. Counts stay visible.

    Parameters
    ----------
    df : DataFrame
        One row per cell; not modified.
    count_col : str
        Units behind each cell (responses, customers).
    value_cols : sequence of str
        Columns blanked in suppressed rows (NaN in numeric columns, None otherwise).
    threshold : int
        Smallest count shown (default ``config.SMALL_CELL``).
    group_cols : iterable of str
        Cells sharing these values add up to one shown total (e.g. ``["quarter"]``
        for teams within a quarter); empty = the whole frame is one group.
    total_shown : bool
        Whether a total of each group is published beside the cells.

    Returns
    -------
    DataFrame
        A copy with ``suppressed`` (bool) and ``suppressed_reason`` (``"small cell"``,
        ``"complementary"`` or ``""``). A group of a single suppressed cell cannot be
        protected by another cell: its total must not be shown (logged by the caller).
    """
    missing = [c for c in [count_col, *value_cols, *group_cols] if c not in df.columns]
    if missing:
        raise ParameterError(f"suppress_small_cells: no column(s) {missing}; "
                             f"columns are {list(df.columns)}")
    out = df.copy()
    counts = pd.to_numeric(out[count_col], errors="coerce")
    primary = (counts.isna() | (counts < threshold)).to_numpy()
    if "suppressed" in out.columns:
        primary |= out["suppressed"].fillna(False).astype(bool).to_numpy()
    reason = np.where(primary, PRIMARY, "").astype(object)
    if total_shown:
        groups = ([np.zeros(len(out), int)] if not list(group_cols)
                  else [out[list(group_cols)].astype(str).agg("\x1f".join, axis=1).to_numpy()])[0]
        for g in pd.unique(groups):
            pos = np.flatnonzero(groups == g)
            hidden = primary[pos]
            if hidden.sum() != 1 or len(pos) < 2:
                continue
            shown = pos[~hidden]
            order = np.lexsort((shown, counts.to_numpy(float)[shown]))  # smallest, then first
            reason[shown[order[0]]] = COMPLEMENTARY
    suppressed = reason != ""
    for c in value_cols:
        if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype(float) if out[c].dtype.kind in "iub" else out[c]
            out.loc[suppressed, c] = np.nan
        else:
            out[c] = out[c].astype(object)
            out.loc[suppressed, c] = None
    out["suppressed"] = suppressed
    out["suppressed_reason"] = reason
    return out
