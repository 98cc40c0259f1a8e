"""Everything an analysis needs for one quarter, prepared once and cached.

``prepare(source, quarter, as_of)`` opens the source, resolves the run's as-of date
and quarter, validates the tables against the as-of date (future-dated rows are
quarantined), cuts the view of the world on the quarter's last day and builds the
derived tables. The result is cached as Parquet + JSON under
``CACHE_DIR/prepared/<fingerprint>-<quarter>-<as_of>-<code>/`` (``code`` hashes the
package's own source, so a code change never serves stale tables); every notebook of
a run calls ``prepare`` with the same parameters and loads the cache in milliseconds.

When quarter and as-of are given explicitly and the source is a local folder, file
or the sample, a content hash of its files finds the cache without reading the
tables at all. During a run, the runner names its own prepared folder in
``KPISAT_PREPARED``: every notebook of the run then loads exactly what the runner
prepared (also from a database, and even if the code changes while the run is going).
The runner prepares through ``prepare_in_child``, so that the gigabyte a company-scale
build takes is given back when the child exits, not kept beside the kernels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import config
from .errors import KpisatError, ParameterError
from .memory import return_free_memory
from .quarters import latest_complete_quarter, parse_quarter, quarter_end

log = logging.getLogger(__name__)

#: Version of the cache layout; bump when Prepared's shape changes.
CACHE_LAYOUT = 2
#: Environment variable through which the runner hands its prepared folder to kernels.
PREPARED_ENV = "KPISAT_PREPARED"
#: Environment variable overriding where prepared quarters are cached.
CACHE_ENV = "KPISAT_PREPARED_CACHE"
_FILE_SUFFIXES = (".csv", ".parquet", ".xlsx", ".duckdb", ".json")


@dataclass
class Validation:
    """What validation found, as a prepared run keeps it.

    Attributes
    ----------
    quarantine : DataFrame or dict of DataFrames
        Rejected rows with their reasons, as ``analysis.validate`` reports them.
    quality : dict
        The data-quality summary of the whole input (``ValidatedData.data_quality()``).
    """

    quarantine: Any
    quality: dict = field(default_factory=dict)

    def data_quality(self) -> dict:
        """The data-quality summary (same call as on ``ValidatedData``)."""
        return self.quality


@dataclass
class Prepared:
    """One quarter's inputs, validated, cut at the quarter's last day and derived.

    Attributes
    ----------
    tables : mapping of str to DataFrame
        Typed tables as the world looked on the quarter's last day (loaded from the
        cache: each table is read on first use, see :class:`LazyFrames`).
    derived : mapping of str to DataFrame
        ``rep_quarter_panel``, ``survival_episodes``, ``renewal_table``.
    validated : Validation
        Quarantine and data-quality summary.
    quarter : str
        Analysed quarter, e.g. ``2025Q3``.
    as_of : str
        ISO date the data was extracted.
    fingerprint : str
        Content fingerprint of the input tables.
    source_description : str
        What the source is, without credentials.
    """

    tables: Mapping[str, pd.DataFrame]
    derived: Mapping[str, pd.DataFrame]
    validated: Validation
    quarter: str
    as_of: str
    fingerprint: str
    source_description: str
    #: The cache folder it was saved to / loaded from.
    location: Path | None = None

    @property
    def quarter_end(self) -> date:
        """Last day of the analysed quarter (the day the world is seen as of)."""
        return quarter_end(self.quarter)


# ---------------------------------------------------------------- parameters
def parse_as_of(value: str | date | None) -> date | None:
    """An ``--as-of`` value as a date (None/"" stay None).

    Raises
    ------
    ParameterError : when the value is not an ISO date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ParameterError(f"as_of {value!r} is not a date; write it like 2025-12-31") from None


def resolve_quarter(quarter: str | None, as_of: date) -> str:
    """The quarter to analyse: ``quarter`` if given, else the latest complete one.

    Raises
    ------
    ParameterError : when the label is malformed or the quarter ends after ``as_of``.
    """
    if not quarter:
        return latest_complete_quarter(as_of)
    y, q = parse_quarter(quarter)
    label = f"{y}Q{q}"
    if quarter_end(label) > as_of:
        raise ParameterError(
            f"quarter {label} ends {quarter_end(label)}, after the data's as-of date "
            f"{as_of}; choose {latest_complete_quarter(as_of)} or earlier, or pass --as-of")
    return label


def normalise_source(source: str | Path | None) -> str | None:
    """None for the sample company ("" and None alike), else the spec as a string."""
    if source is None or str(source).strip() == "":
        return None
    return str(source)


# ---------------------------------------------------------------- prepare
def prepare(source: str | None = None, quarter: str | None = None,
            as_of: str | date | None = None, *, fresh: bool = False,
            pseudonymise: bool = False) -> Prepared:
    """Load, validate, cut and derive one quarter's tables (cached).

    Parameters
    ----------
    source : folder, ``.duckdb`` file or ``postgresql://`` URL; None or "" = sample.
    quarter : e.g. ``2025Q4``; None or "" = latest complete quarter on or before as_of.
    as_of : ISO date the data was extracted; None or "" = what the source states
        (``run.json`` / ``kpisat_meta``), else today.
    fresh : ignore ``KPISAT_PREPARED`` (the runner prepares afresh).
    pseudonymise : replace rep and customer ids everywhere by keyed HMACs
        (``analysis.privacy``; key from ``KPISAT_PSEUDONYM_KEY``).

    Returns
    -------
    Prepared

    Raises
    ------
    ParameterError : bad quarter / as-of, or a quarter ending after as_of.
    InputError, SourceError : the input cannot be read or breaks the contract.
    """
    t0 = time.perf_counter()
    spec = normalise_source(source)
    as_of_opt = parse_as_of(as_of)
    if quarter:
        parse_quarter(quarter)  # malformed labels fail before anything is read
    hit = None if fresh else _load_run_prepared(spec, quarter, as_of_opt)
    code = code_version()
    key_bytes = None
    if pseudonymise:
        from .privacy import pseudonym_key, pseudonymise as hmac_id

        key_bytes = pseudonym_key()  # fails early, in one line, when the key is unset
        # The cache must never mix plain and pseudonymised tables, nor two keys.
        code = hashlib.sha256(f"{code}\0{hmac_id('kpisat-cache', key_bytes)}".encode()).hexdigest()
    if hit is None and quarter and as_of_opt is not None:
        hit = _load_indexed(_quick_key(spec, quarter, as_of_opt, code))
    from .sources import PostgresSource, open_source

    if hit is not None:
        if spec is not None:  # a cache entry is shared by equal data under other names
            hit.source_description = open_source(spec).describe()
        log.info("prepared %s from cache in %.2fs", hit.quarter, time.perf_counter() - t0)
        return hit

    source = open_source(spec)
    if isinstance(source, PostgresSource):
        from .warehouse import Warehouse

        with Warehouse(source) as wh:
            if wh.mismatch is None:
                return _prepare_in_warehouse(wh, quarter, as_of_opt, code, key_bytes, t0)
            log.warning("%s: reading every table and validating in Python (give the column "
                        "the contract's type to let PostgreSQL do the work)", wh.mismatch)
    raw = source.read()
    day = _run_day(as_of_opt, raw.as_of)
    label = resolve_quarter(quarter, day)
    key = f"{raw.fingerprint[:20]}-{label}-{day.isoformat()}-{code[:10]}"
    folder = prepared_dir() / key
    prepared = _load(folder) if (folder / "meta.json").exists() else None
    if prepared is None:
        prepared = _build(raw, label, day, key_bytes, folder)
    else:  # the same data in another folder shares the cache entry, not its name
        prepared.source_description = raw.description
    index_key = _quick_key(spec, label, day, code)
    if index_key is not None:
        _write_index(index_key, key)
    log.info("prepared %s (as of %s) in %.2fs", label, day, time.perf_counter() - t0)
    return prepared


def prepare_in_child(source: str | None = None, quarter: str | None = None,
                     as_of: str | date | None = None, *, fresh: bool = False,
                     pseudonymise: bool = False,
                     poll: Callable[[], None] | None = None) -> Prepared:
    """:func:`prepare` run in a child process; this process loads only the result.

    For a long-lived process (the runner): preparing a quarter at company scale takes
    over a gigabyte, which a process keeps (freed memory is reused, rarely returned)
    while the kernels run. The child writes the prepared cache and exits; the
    :class:`Prepared` returned here reads its tables from the cache on first use.

    Parameters
    ----------
    source, quarter, as_of, fresh, pseudonymise : as for :func:`prepare`.
    poll : called about every 0.2 s while the child works; whatever it raises (the
        runner's recorded Ctrl-C) stops the child and is raised here.

    Raises
    ------
    What :func:`prepare` raises in the child (ParameterError, InputError, ...), and
    RuntimeError when the child dies without an answer (killed, out of memory).
    """
    import multiprocessing

    # fork: no second import of pandas, DuckDB and pyarrow (about a second of CPU)
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_prepare_child, name="kpisat-prepare", daemon=True,
                        args=(send, os.getpid(), source, quarter, as_of, fresh, pseudonymise))
    child.start()
    send.close()
    try:
        while not receive.poll(0.2):
            if poll is not None:
                poll()
            if not child.is_alive() and not receive.poll(0):
                code = child.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise RuntimeError(f"preparing the inputs failed: the preparing process {how}"
                                   + (" (out of memory?)" if code == -9 else ""))
        kind, value = receive.recv()
    except BaseException:
        child.terminate()
        child.join()
        raise
    finally:
        receive.close()
    child.join()
    if kind == "error":
        raise value
    folder, description = value
    loaded = _load(Path(folder))
    if loaded is None:
        raise RuntimeError(f"preparing the inputs failed: cannot read back {folder}")
    loaded.source_description = description
    return loaded


def _prepare_child(send, parent: int, source, quarter, as_of, fresh: bool,
                   pseudonymise: bool) -> None:
    """The child of :func:`prepare_in_child`: prepare, send (kind, value), exit."""
    import ctypes
    import pickle
    import signal
    import traceback

    def stop(signum: int, frame) -> None:
        raise SystemExit(128 + signum)  # unwinds, so the unfinished cache folder is removed

    for sig in (signal.SIGINT, signal.SIGTERM):  # not the parent's handlers
        signal.signal(sig, stop)
    try:  # Linux: stop when the parent dies (killed while waiting for this child)
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before that
        return
    try:
        p = prepare(source, quarter, as_of, fresh=fresh, pseudonymise=pseudonymise)
        if p.location is None:
            raise RuntimeError("prepare returned tables without a cache folder")
        answer = ("ok", (str(p.location), p.source_description))
    except Exception as e:  # handed to the parent, which raises it
        if not isinstance(e, KpisatError):
            e.add_note(f"in the preparing process:\n{traceback.format_exc()}")
        try:
            pickle.dumps(e)
            answer = ("error", e)
        except Exception:
            answer = ("error", RuntimeError(f"preparing the inputs failed: "
                                            f"{type(e).__name__}: {e}"))
    try:
        send.send(answer)
        send.close()
    except OSError:  # the parent stopped waiting
        pass


def _run_day(given: date | None, stated: date | None) -> date:
    """The run's as-of date: given, else stated by the source, else today (warned)."""
    if given is None and stated is None:
        log.warning("the source states no as-of date and none was given: using today (%s)",
                    date.today())
    return given or stated or date.today()


def _prepare_in_warehouse(wh, quarter: str | None, as_of: date | None, code: str,
                          key: bytes | None, t0: float) -> Prepared:
    """``prepare`` for a PostgreSQL source whose columns have the contract's types.

    Validation, the as-of cut and the derived tables run in the database
    (``analysis.warehouse``); only quarantined rows, counts, derived rows and the
    tables the models read row by row come back.
    """
    from .warehouse import SORT_KEYS

    day = _run_day(as_of, wh.as_of)
    label = resolve_quarter(quarter, day)
    fingerprint = wh.fingerprint()
    folder = prepared_dir() / f"{fingerprint[:20]}-{label}-{day.isoformat()}-{code[:10]}"
    prepared = _load(folder) if (folder / "meta.json").exists() else None
    if prepared is not None:
        # the same data elsewhere (another schema) shares the cache entry, not its name
        prepared.source_description = wh.source.describe()
        log.info("prepared %s (as of %s) from cache in %.2fs", label, day,
                 time.perf_counter() - t0)
        return prepared
    built = wh.build(label, day)
    tables, derived, quarantine = built.tables, built.derived, built.quarantine
    if key is not None:
        from .privacy import pseudonymise_quarantine, pseudonymise_tables

        tables = pseudonymise_tables(tables, key)
        quarantine = pseudonymise_quarantine(quarantine, key)
        derived = pseudonymise_tables(derived, key)
        derived = {n: df.sort_values(SORT_KEYS[n], kind="mergesort", ignore_index=True)
                   if n in SORT_KEYS else df for n, df in derived.items()}
    quality = quality_counts(list(built.rows_in_warehouse), built.rows_used, quarantine, day)
    prepared = Prepared(tables=tables, derived=derived,
                        validated=Validation(quarantine, quality), quarter=label,
                        as_of=day.isoformat(), fingerprint=fingerprint,
                        source_description=wh.source.describe())
    _save_atomic(prepared, folder)
    prepared.location = folder
    t = built.transfer
    log.info("prepared %s (as of %s) in PostgreSQL in %.2fs: %d rows stored, %d rows "
             "(%.0f kB) sent back in %d queries", label, day, time.perf_counter() - t0,
             sum(built.rows_in_warehouse.values()), t.rows, t.bytes / 1024, t.queries)
    return prepared


def _build(raw, quarter: str, day: date, key: bytes | None = None,
           folder: Path | None = None) -> Prepared:
    """Validate, cut to the quarter's last day and derive; empties ``raw.tables`` on the way.

    With ``folder`` the result is written there (atomically) and returned as loaded from
    it; without, it is built in a temporary folder and returned in memory.
    """
    if folder is None:
        with tempfile.TemporaryDirectory() as tmp:
            built = _build(raw, quarter, day, key, Path(tmp) / "prepared")
            built.tables = {n: built.tables[n] for n in built.tables}
            built.derived = {n: built.derived[n] for n in built.derived}
            built.location = None
            return built
    with _atomic_folder(folder) as tmp:
        _write_build(raw, quarter, day, key, tmp)
    prepared = _load(folder)
    if prepared is None:
        raise OSError(f"cannot read back the prepared folder {folder}")
    return prepared


def _write_build(raw, quarter: str, day: date, key: bytes | None, out: Path) -> None:
    """Write what :func:`_build` builds into the empty folder ``out``, one table at a time.

    Peak memory at company scale: each table is validated, cut to the quarter's last
    day and written before the next is parsed, its text as read dropped as soon as it
    is checked; DuckDB then reads the written tables' Parquet files for the derived
    tables, each of which is written and dropped before the next is built.
    """
    from .asof import as_of_view
    from .derived import build_each
    from .validate import validate

    last_day = quarter_end(quarter)
    (out / "tables").mkdir(parents=True)
    (out / "derived").mkdir()
    files: dict[str, Path] = {}
    used: dict[str, int] = {}
    visible: list[np.ndarray] = []
    pseudonyms: dict[str, dict[str, str]] = {}  # ids of every table, for the clash check

    def keep(name: str, clean: pd.DataFrame, frame: pd.DataFrame, q: pd.DataFrame) -> None:
        visible.append(_visible_rows(name, frame, q, last_day))
        raw.tables.pop(name, None)
        if key is not None:
            from .privacy import pseudonymise_tables

            clean = pseudonymise_tables({name: clean}, key, seen=pseudonyms)[name]
        view = as_of_view({name: clean}, last_day)[name]
        del clean
        files[name] = out / "tables" / f"{name}.parquet"
        view.to_parquet(files[name], index=False)
        used[name] = len(view)

    validated = validate(raw, day, on_table=keep)
    quarantine = validated.quarantine
    if key is not None:
        from .privacy import pseudonymise_quarantine

        quarantine = pseudonymise_quarantine(quarantine, key)
    if visible:
        quarantine = quarantine.loc[np.concatenate(visible)].reset_index(drop=True)
    return_free_memory()
    derived = []
    for name, table in build_each(files, quarter):
        table.to_parquet(out / "derived" / f"{name}.parquet", index=False)
        derived.append(name)
        del table
        return_free_memory()
    quality = quality_counts(list(validated.rows_read), used, quarantine, validated.as_of)
    _write_meta(out, quarter=quarter, as_of=day.isoformat(), fingerprint=raw.fingerprint,
                source_description=raw.description, tables=list(files), derived=derived,
                quarantine=_save_any(quarantine, out / "quarantine"),
                quality=_save_any(quality, out / "quality"))


def _visible_rows(table: str, frame: pd.DataFrame, quarantine: pd.DataFrame,
                  day: date) -> np.ndarray:
    """Which of a table's quarantined rows a view of ``day`` would show.

    A row is visible by the as-of view's rule (``analysis.asof.VISIBLE_FROM``); a
    quarantined row whose visibility date cannot be read counts as visible.
    ``frame`` is the table as read.
    """
    from .asof import VISIBLE_FROM
    from .contract import TABLES
    from .parse import parse_column

    col = VISIBLE_FROM.get(table)
    if not len(quarantine) or col is None or col not in frame:
        return np.ones(len(quarantine), dtype=bool)
    cells = frame[col].reset_index(drop=True)
    dates = parse_column(cells, TABLES[table].column(col)).values.reset_index(drop=True)
    positions = quarantine["row"].to_numpy() - 1
    return ~(dates.iloc[positions] > pd.Timestamp(day)).to_numpy()


def quality_counts(tables: list[str], used: dict[str, int], quarantine: pd.DataFrame,
                   as_of: date) -> dict:
    """The data-quality summary from rows used and quarantined rows (both visible ones).

    Parameters
    ----------
    tables : the tables read, in contract order.
    used : clean rows visible on the quarter's last day, per table.
    quarantine : quarantined rows visible on that day.
    as_of : the data's as-of date.
    """
    from .quarantine import ValidatedData

    held = {t: int((quarantine["table"] == t).sum()) for t in tables}
    by_reason = {t: {str(r): int(c) for r, c in quarantine.loc[quarantine["table"] == t, "reason"]
                     .value_counts(sort=False).items()} for t in tables}
    return ValidatedData(tables={}, quarantine=quarantine,
                         rows_read={t: used[t] + held[t] for t in tables}, rows_used=used,
                         rows_quarantined=held, by_reason=by_reason,
                         as_of=as_of).data_quality()


# ---------------------------------------------------------------- cache keys
def prepared_dir() -> Path:
    """Where prepared quarters are cached: ``CACHE_DIR/prepared``, or the folder named
    by ``KPISAT_PREPARED_CACHE`` (tests use it to force a rebuild)."""
    return Path(os.environ.get(CACHE_ENV) or Path(config.CACHE_DIR) / "prepared")


def code_version() -> str:
    """sha256 of the package's source files (Python, SQL): a code change is a cache miss."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(f"layout{CACHE_LAYOUT}".encode())
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".sql") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def run_environment(p: Prepared, source: str | None) -> dict[str, str]:
    """Environment that hands ``p`` to the kernels of a run (see :data:`PREPARED_ENV`)."""
    value = {"folder": str(p.location), "source": normalise_source(source) or "",
             "quarter": p.quarter, "as_of": p.as_of}
    return {PREPARED_ENV: json.dumps(value)}


def _load_run_prepared(spec: str | None, quarter: str | None,
                       as_of: date | None) -> Prepared | None:
    """The runner's prepared folder (``KPISAT_PREPARED``) if it answers this call."""
    try:
        pinned = json.loads(os.environ.get(PREPARED_ENV, ""))
    except ValueError:
        return None
    if pinned.get("source") != (spec or "") or (quarter and quarter != pinned.get("quarter")) or (
            as_of is not None and as_of.isoformat() != pinned.get("as_of")):
        return None
    folder = Path(pinned.get("folder", ""))
    return _load(folder) if (folder / "meta.json").exists() else None


def _quick_key(spec: str | None, quarter: str, day: date, code: str) -> str | None:
    """A cache key found without reading the tables (None when there is none)."""
    h = hashlib.sha256(f"{code}\0{quarter}\0{day.isoformat()}\0".encode())
    if spec is None:
        h.update(b"sample\0" + _files_digest(Path(config.SAMPLE_DIR)).encode())
        return h.hexdigest()
    if "://" in spec:
        return None
    path = Path(spec)
    if not path.exists():
        return None
    h.update(b"path\0" + str(path.resolve()).encode() + b"\0" + _files_digest(path).encode())
    return h.hexdigest()


def _files_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's table files (names and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _FILE_SUFFIXES
    ) if path.is_dir() else []
    for p in files:
        h.update(p.name.encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _index_path(quick: str) -> Path:
    return prepared_dir() / "index" / f"{quick}.json"


def _write_index(quick: str, key: str) -> None:
    path = _index_path(quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key}), encoding="utf-8")
    os.replace(tmp, path)


def _load_indexed(quick: str | None) -> Prepared | None:
    if quick is None or not _index_path(quick).exists():
        return None
    key = json.loads(_index_path(quick).read_text(encoding="utf-8"))["key"]
    folder = prepared_dir() / key
    return _load(folder) if (folder / "meta.json").exists() else None


# ---------------------------------------------------------------- (de)serialise
def _save_atomic(p: Prepared, folder: Path) -> None:
    """Write ``p`` into a temporary sibling folder, then rename it into place."""
    with _atomic_folder(folder) as tmp:
        _write_meta(tmp, quarter=p.quarter, as_of=p.as_of, fingerprint=p.fingerprint,
                    source_description=p.source_description,
                    tables=_save_frames(p.tables, tmp / "tables"),
                    derived=_save_frames(p.derived, tmp / "derived"),
                    quarantine=_save_any(p.validated.quarantine, tmp / "quarantine"),
                    quality=_save_any(p.validated.quality, tmp / "quality"))


@contextmanager
def _atomic_folder(folder: Path):
    """A temporary sibling of ``folder`` to write into, renamed into place on success."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").exists():  # a concurrent writer won: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_meta(folder: Path, **meta: Any) -> None:
    """``meta.json``: the cache layout and what the folder holds (see :func:`_load`)."""
    meta = {"layout": CACHE_LAYOUT, **meta}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _save_frames(frames: dict[str, pd.DataFrame], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return list(frames)


def _save_any(value: Any, base: Path) -> dict:
    """Store a DataFrame, a dict of DataFrames or a JSON value; return how to read it."""
    if isinstance(value, pd.DataFrame):
        value.to_parquet(base.with_suffix(".parquet"), index=False)
        return {"kind": "frame"}
    if isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
        return {"kind": "frames", "names": _save_frames(value, base)}
    from .findings import to_jsonable
    base.with_suffix(".json").write_text(json.dumps(to_jsonable(value)), encoding="utf-8")
    return {"kind": "json"}


def _load_any(how: dict, base: Path) -> Any:
    if how["kind"] == "frame":
        return pd.read_parquet(base.with_suffix(".parquet"))
    if how["kind"] == "frames":
        return dict(_load_frames(how["names"], base))
    return json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))


class LazyFrames(Mapping):
    """Read-only mapping of table name to DataFrame, each read from Parquet on first use.

    A notebook reads a handful of a prepared quarter's tables; reading only those keeps
    a kernel's memory to what it uses (at company scale the event tables alone take
    about 1 GiB in pandas, and no notebook reads them).
    """

    def __init__(self, names: list[str], folder: Path) -> None:
        self._names = list(names)
        self._folder = folder
        self._loaded: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._loaded:
            if name not in self._names:
                raise KeyError(name)
            self._loaded[name] = pd.read_parquet(self._folder / f"{name}.parquet")
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._names  # without reading the table

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"LazyFrames({self._names}, loaded={list(self._loaded)})"


def _load_frames(names: list[str], folder: Path) -> LazyFrames:
    return LazyFrames(names, folder)


def _load(folder: Path) -> Prepared | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("layout") != CACHE_LAYOUT:
            return None
        return Prepared(
            tables=_load_frames(meta["tables"], folder / "tables"),
            derived=_load_frames(meta["derived"], folder / "derived"),
            validated=Validation(_load_any(meta["quarantine"], folder / "quarantine"),
                                 _load_any(meta["quality"], folder / "quality")),
            quarter=meta["quarter"], as_of=meta["as_of"], fingerprint=meta["fingerprint"],
            source_description=meta["source_description"], location=folder)
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring unreadable prepared cache %s: %s", folder, e)
        return None
