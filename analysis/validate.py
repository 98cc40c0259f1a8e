"""Parse and check the raw tables against the contract; quarantine what fails.

``validate(raw, as_of)`` returns clean typed tables plus one quarantine line per
rejected row. Fatal problems (a required table or column missing) raise one
``InputError`` listing all of them. Row checks run in the fixed order of
``analysis.quarantine.REASONS``; a row keeps the first reason it fails:

1. identity: missing id, duplicate ids (identical copies: first kept; conflicting
   copies: all quarantined);
2. column checks, driven by ``analysis.contract`` through a pandera schema run with
   ``lazy=True``: type (parse), nullability, choices, ranges, dates before 1990,
   event dates after ``as_of``;
3. row rules: date order, deal status vs close date, answers without a response date,
   payments without a payment date, plan weights summing to 1;
4. references, tables in dependency order so quarantine cascades: a row naming a
   quarantined parent is quarantined with "<parent> quarantined";
5. overlapping plan assignments of a team (all overlapping rows quarantined).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from .config import WEIGHT_SUM_TOL, WEIGHTS
from .contract import TABLES, Column, Table
from .errors import ParameterError
from .memory import return_free_memory
from .parse import CHECK_DTYPE, DATE_RANGE_REASON, PARSE_REASON, Parsed, parse_column
from .quarantine import QUARANTINE_COLUMNS, RowVerdicts, ValidatedData, quarantine_rows
from .sources import RawData, raise_problems, structure_problems

log = logging.getLogger(__name__)

EARLIEST = pd.Timestamp("1990-01-01")

#: (later, earlier) date pairs: a row whose ``later`` precedes ``earlier`` is quarantined.
DATE_ORDER = {
    "reps": (("exit_date", "hire_date"),),
    "plan_assignments": (("valid_to", "valid_from"),),
    "deals": (("close_date", "created_date"),),
    "contracts": (("end_date", "start_date"), ("cancel_date", "start_date")),
    "surveys": (("responded_date", "sent_date"),),
}
#: Entity named in reference reasons ("unknown rep", "rep quarantined").
ENTITY = {"reps": "rep", "customers": "customer", "kpi_plans": "plan"}
_CHECK_ORDER = ("missing value", "not an allowed value", "out of range",
                "date before 1990-01-01", "future-dated")


def validate(raw: RawData, as_of: date, *,
             on_table: Callable[[str, pd.DataFrame, pd.DataFrame, pd.DataFrame], None]
             | None = None) -> ValidatedData:
    """Parse, check and split every table into used rows and quarantined rows.

    Parameters
    ----------
    raw : RawData
        Tables as read by a source; not modified (``on_table`` may drop its tables).
    as_of : date
        The data's as-of date: event dates after it are future-dated.
    on_table : callable, optional
        Called as ``on_table(name, clean, raw_frame, quarantined)`` as soon as a table
        is checked; the clean table is then handed over, not kept in the result's
        ``tables`` (at company scale, keeping every typed table beside the text as read
        costs most of a gigabyte).

    Returns
    -------
    ValidatedData
        Typed clean tables, the quarantine and per-table counts.

    Raises
    ------
    InputError
        Listing every missing required table and required column at once.
    ParameterError
        When ``as_of`` is missing or not a date.
    """
    try:
        as_of_ts = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        as_of_ts = pd.NaT
    if pd.isna(as_of_ts):
        raise ParameterError(f"as_of {as_of!r} is not a date; pass the day the data was extracted")
    as_of_ts = as_of_ts.normalize()
    raise_problems(structure_problems(raw.tables, raw.locations))
    clean: dict[str, pd.DataFrame] = {}
    parents: dict[str, _Parent] = {}  # keys of the tables others refer to
    quarantined, counts = [], {}
    for name, table in TABLES.items():
        if name not in raw.tables:
            continue
        frame = raw.tables[name]
        if not frame.index.equals(pd.RangeIndex(len(frame))):
            frame = frame.set_axis(pd.RangeIndex(len(frame)), copy=False)
        typed, verdicts, ids = _check_table(table, frame, as_of_ts, parents)
        keep = verdicts.alive
        clean[name] = _finish(table, typed, keep)
        if name in ENTITY:
            parents[name] = _Parent.of(table, typed, clean[name])
        del typed
        q = quarantine_rows(name, verdicts, ids, frame)
        quarantined.append(q)
        counts[name] = (len(frame), int(keep.sum()), len(q))
        if len(q):
            log.warning("%s: %d of %d rows quarantined (%s)", name, len(q), len(frame),
                        ", ".join(f"{r}: {n}" for r, n in q["reason"].value_counts().items()))
        if on_table is not None:
            on_table(name, clean.pop(name), frame, q)
        del frame
        return_free_memory()  # a table's scratch memory, before the next table
    quarantine = (pd.concat(quarantined, ignore_index=True) if quarantined
                  else pd.DataFrame(columns=list(QUARANTINE_COLUMNS)))
    by_reason = {n: {str(r): int(c) for r, c in
                     quarantine.loc[quarantine["table"] == n, "reason"].value_counts(sort=False).items()}
                 for n in counts}
    return ValidatedData(
        tables=clean, quarantine=quarantine,
        rows_read={n: c[0] for n, c in counts.items()},
        rows_used={n: c[1] for n, c in counts.items()},
        rows_quarantined={n: c[2] for n, c in counts.items()},
        by_reason=by_reason, as_of=as_of_ts.date(),
        fingerprint=raw.fingerprint, locations=dict(raw.locations))


@dataclass
class _Parent:
    """What children need of a referenced table: its ids, read and used."""

    known: pd.Index  # distinct non-null ids of every row read
    used: np.ndarray  # per ``known`` id: whether a used row has it
    teams: pd.Index | None = None  # reps only: every team_id named by a row read

    @classmethod
    def of(cls, table: Table, typed: pd.DataFrame, clean: pd.DataFrame) -> _Parent:
        """The keys of ``table`` (all rows ``typed``, used rows ``clean``)."""
        known = pd.Index(typed[table.id_column].dropna().unique(), dtype=object)
        used = known.isin(clean[table.id_column])
        teams = None
        if table.name == "reps":
            teams = pd.Index(typed["team_id"].dropna().unique(), dtype=object)
        return cls(known, used, teams)

    def lookup(self, values: pd.Series, parsed: Parsed) -> tuple[np.ndarray, np.ndarray]:
        """(known, used) masks of the parsed ``values`` of a column.

        Arrow-backed text is looked up once per distinct cell as read (a present id
        parses to its own text), without hashing millions of Python strings.
        """
        if parsed.codes is not None:
            found = pc.index_in(parsed.distinct, value_set=pyarrow.array(
                self.known.to_numpy(), parsed.distinct.type))
            per_distinct = np.append(pc.fill_null(found, -1).to_numpy(), -1)
            pos = per_distinct[parsed.codes]  # code -1 (a missing cell) takes the last
        else:
            pos = self.known.get_indexer(values)
        known = pos >= 0
        return known, known & self.used[np.where(known, pos, 0)]


def _check_table(table: Table, frame: pd.DataFrame, as_of: pd.Timestamp,
                 parents: dict[str, _Parent]):
    """Typed frame (all rows), verdicts and row identifiers for one table."""
    cols = [c for c in table.columns if c.name in frame.columns]
    parsed = {c.name: parse_column(frame[c.name], c) for c in cols}
    typed = pd.DataFrame({n: p.values for n, p in parsed.items()}, index=frame.index)
    for p in parsed.values():  # the frame holds the values now; keep the masks only
        p.values = None
    verdicts = RowVerdicts(len(frame))
    ids = _row_ids(table, typed)
    _check_identity(table, frame, typed, parsed, verdicts)
    _check_parsing(cols, parsed, verdicts)
    _check_columns(table, cols, typed, as_of, verdicts, parsed)
    _check_rows(table.name, typed, verdicts)
    _check_references(table, typed, verdicts, parents, parsed)
    del parsed
    if table.name == "plan_assignments":
        _check_overlaps(typed, verdicts)
    return typed, verdicts, ids


def _has_id(table: Table) -> bool:
    return table.columns[0].kind == "id"


def _row_ids(table: Table, typed: pd.DataFrame) -> pd.Series:
    """What names a row in the quarantine: its id, or team/plan/valid_from for assignments."""
    if _has_id(table):
        return typed[table.id_column]
    parts = [typed["team_id"].fillna(""), typed["plan_id"].fillna(""),
             typed["valid_from"].dt.strftime("%Y-%m-%d").fillna("")]
    return parts[0].str.cat(parts[1:], sep="/").astype(object)


def _check_identity(table, frame, typed, parsed, verdicts) -> None:
    """Missing ids, conflicting duplicate ids, identical duplicate rows."""
    contract_cols = list(typed.columns)
    if not _has_id(table):
        identical = frame[contract_cols].duplicated(keep="first").to_numpy()  # exactly as read
        verdicts.mark(identical, "duplicate row", None)
        return
    key = table.id_column
    missing = parsed[key].null
    verdicts.mark(missing, "missing id", key)
    # one group per id, and one for all missing ids (as ``Series.duplicated`` groups them)
    codes = parsed[key].codes
    if codes is None:
        codes = pd.factorize(typed[key])[0]
    group = np.where(missing, codes.max(initial=-1) + 1, codes)
    size = np.bincount(group)
    # rows identical as read share their id cell, hence their parsed id (or its absence):
    # only rows whose id repeats can be copies of one another
    repeats = size[group] > 1
    if not repeats.any():
        return
    identical = np.zeros(len(group), dtype=bool)
    identical[repeats] = frame.loc[repeats, contract_cols].duplicated(keep="first").to_numpy()
    distinct = ~identical & ~missing
    conflicting = ~missing & (np.bincount(group[distinct], minlength=len(size))[group] > 1)
    if conflicting.any():
        verdicts.mark(conflicting, "conflicting duplicate id", key)
    verdicts.mark(identical, "duplicate row", key)


def _check_parsing(cols: list[Column], parsed: dict[str, Parsed], verdicts) -> None:
    """Cells present but not of their column's kind."""
    for c in cols:
        p = parsed[c.name]
        if c.kind == "date":
            verdicts.mark(p.out_of_range, DATE_RANGE_REASON, c.name)
        if c.kind in PARSE_REASON:
            verdicts.mark(p.bad & ~p.out_of_range, PARSE_REASON[c.kind], c.name)


def contract_schema(table: Table, columns: list[str], as_of: pd.Timestamp) -> pa.DataFrameSchema:
    """The pandera schema of a typed (parsed) table, built from the contract.

    Parameters
    ----------
    table : Table
        Contract table.
    columns : list of str
        The contract columns present in the data.
    as_of : Timestamp
        Event dates after it fail the "future-dated" check.

    Returns
    -------
    DataFrameSchema
        Each check's ``name`` is its quarantine reason; nullability failures mean
        "missing value".
    """
    spec = {}
    for c in table.columns:
        if c.name not in columns:
            continue
        checks = []
        if c.kind == "enum":
            checks.append(pa.Check.isin(list(c.choices), name="not an allowed value"))
        if c.kind in ("float", "int") and (c.lo is not None or c.hi is not None):
            lo = -np.inf if c.lo is None else c.lo
            hi = np.inf if c.hi is None else c.hi
            checks.append(pa.Check.in_range(lo, hi, name="out of range"))
        if c.kind == "date":
            checks.append(pa.Check.ge(EARLIEST, name="date before 1990-01-01"))
            if c.event:
                checks.append(pa.Check.le(as_of, name="future-dated"))
        spec[c.name] = pa.Column(CHECK_DTYPE[c.kind], checks=checks, nullable=c.nullable)
    return pa.DataFrameSchema(spec, strict=False, coerce=False)


def _check_columns(table, cols, typed, as_of, verdicts, parsed) -> None:
    """Run the contract schema lazily and mark each failure with its reason.

    Every check is a test of one cell, so pandera runs each column on one
    representative row per distinct value (``_representatives``); a row fails what
    its representative fails.
    """
    schema = contract_schema(table, [c.name for c in cols], as_of)
    failures = []  # (reason, column, row mask)
    for c in cols:
        rows, rep_of_row = _representatives(c, typed[c.name], parsed[c.name])
        values = typed[c.name] if rows is None else typed[c.name].iloc[rows].reset_index(drop=True)
        column_schema = pa.DataFrameSchema({c.name: schema.columns[c.name]}, strict=False,
                                           coerce=False)
        try:
            with warnings.catch_warnings():  # pandera's own concat FutureWarning, not ours
                warnings.simplefilter("ignore", FutureWarning)
                column_schema.validate(values.to_frame(), lazy=True)
            continue
        except pa.errors.SchemaErrors as e:
            fc = e.failure_cases
        if fc["index"].isna().any():  # a column-level (dtype) failure is a parser bug
            raise RuntimeError(f"{table.name}: typed columns do not match the schema:\n{fc}")
        reason = np.where(fc["check"] == "not_nullable", "missing value", None).astype(object)
        numbered = fc["check_number"].notna().to_numpy()
        checks = schema.columns[c.name].checks
        reason[numbered] = [checks[int(i)].name for i in fc.loc[numbered, "check_number"]]
        at = fc["index"].to_numpy(dtype="int64")
        for r in pd.unique(reason):
            failed = np.zeros(len(values), bool)
            failed[at[reason == r]] = True
            failures.append((r, c.name, failed if rep_of_row is None else failed[rep_of_row]))
    order = {c.name: i for i, c in enumerate(cols)}
    for r in _CHECK_ORDER:
        for _, col, mask in sorted((f for f in failures if f[0] == r), key=lambda f: order[f[1]]):
            verdicts.mark(mask, r, col)


def _representatives(c: Column, values: pd.Series, parsed: Parsed):
    """(rows, rep_of_row): one row per distinct value of the column, and each row's
    position among them; ``(None, None)`` to check every row.

    Text columns without value checks are told apart only by missing or not (their
    parsed values are None exactly where ``parsed.null``); enums by their cell as read;
    dates and integers by value. Floats are nearly all distinct: checked row by row.
    """
    if c.kind == "float":
        return None, None
    if c.kind in ("id", "str"):
        codes = np.where(parsed.null, -1, 0)
    elif c.kind == "enum" and parsed.codes is not None:
        codes = np.where(parsed.null, -1, parsed.codes)
    else:
        codes = pd.factorize(values)[0]
    if len(codes) == 0:
        return None, None
    # codes number distinct values in order of first appearance (-1: missing), so a
    # value's first row is where the running maximum of the codes grows
    top = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.concatenate(([top[0] >= 0], top[1:] > top[:-1])))
    rep = np.full(int(top[-1]) + 2, len(first))  # the last slot: missing values
    rep[codes[first]] = np.arange(len(first))
    missing = codes < 0
    rows = np.append(first, missing.argmax()) if missing.any() else first
    return rows, rep[codes]


def _check_rows(name: str, typed: pd.DataFrame, verdicts) -> None:
    """Rules within a row: date order, status vs dates, answers, payments, weights."""
    for later, earlier in DATE_ORDER.get(name, ()):
        if later in typed and earlier in typed:
            verdicts.mark((typed[later] < typed[earlier]).to_numpy(), f"{later} before {earlier}", later)
    if name == "deals":
        status, closed = typed["status"], typed["close_date"].notna()
        verdicts.mark(((status == "won") & ~closed).to_numpy(), "won deal without close_date", "close_date")
        verdicts.mark(((status == "open") & closed).to_numpy(), "open deal with close_date", "close_date")
    if name == "surveys":
        answered = typed["csat"].notna() | typed["nps"].notna()
        verdicts.mark((answered & typed["responded_date"].isna()).to_numpy(),
                      "csat/nps without responded_date", "responded_date")
    if name == "invoices" and "paid_amount" in typed and "paid_date" in typed:
        verdicts.mark((typed["paid_amount"].notna() & typed["paid_date"].isna()).to_numpy(),
                      "paid_amount without paid_date", "paid_amount")
    if name == "kpi_plans":
        total = typed[list(WEIGHTS)].sum(axis=1, skipna=False)
        verdicts.mark(((total - 1.0).abs() > WEIGHT_SUM_TOL).to_numpy(), "weights do not sum to 1", "w_revenue")


def _check_references(table: Table, typed, verdicts, parents: dict[str, _Parent],
                      parsed: dict[str, Parsed]) -> None:
    """Foreign keys against the parent's used rows ("unknown X" / "X quarantined")."""
    for c in table.columns:
        if c.name not in typed:
            continue
        target = c.references
        rows = ~parsed[c.name].null  # references are text: parsed to None exactly there
        if table.name == "deals" and c.name == "customer_id":
            target, rows = "customers.customer_id", rows & (typed["status"] == "won").to_numpy()
        if not target:
            continue
        parent = target.split(".")[0]
        if parent not in parents:
            continue
        known, used = parents[parent].lookup(typed[c.name], parsed[c.name])
        verdicts.mark(rows & ~known, f"unknown {ENTITY[parent]}", c.name)
        verdicts.mark(rows & known & ~used, f"{ENTITY[parent]} quarantined", c.name)
    if table.name == "plan_assignments" and "reps" in parents:
        # any team a rep row names, used or quarantined: a team is not a row of its own
        teams = parents["reps"].teams
        verdicts.mark((typed["team_id"].notna() & ~typed["team_id"].isin(teams)).to_numpy(),
                      "unknown team", "team_id")


def _check_overlaps(typed: pd.DataFrame, verdicts) -> None:
    """Assignments of one team whose periods overlap: all rows of each overlapping run."""
    alive = verdicts.alive
    a = typed.loc[alive, ["team_id", "valid_from", "valid_to"]]
    if a.empty:
        return
    a = a.assign(end=a["valid_to"].fillna(pd.Timestamp.max)).sort_values(["team_id", "valid_from"])
    prev_end = a.groupby("team_id")["end"].cummax().groupby(a["team_id"]).shift()
    starts_run = prev_end.isna() | (a["valid_from"] > prev_end)
    run = starts_run.cumsum()
    size = run.map(run.value_counts())
    mask = np.zeros(len(typed), bool)
    mask[a.index[(size > 1).to_numpy()]] = True
    verdicts.mark(mask, "overlapping plan assignment", "valid_from")


def _finish(table: Table, typed: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """Used rows (``keep``) with the final dtypes of docs/architecture.md, fresh index."""
    out = typed.copy(deep=False) if keep.all() else typed.take(np.flatnonzero(keep))
    out.index = pd.RangeIndex(len(out))
    for c in table.columns:
        if c.name in out and c.kind == "bool":
            out[c.name] = out[c.name].astype(bool)
    return out
