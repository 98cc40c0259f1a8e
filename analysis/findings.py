"""findings.json and manifest.json: the numbers of a run, written once.

Notebooks hand results on as *fragments* (``run_dir/fragments/<writer>/<key>.json``);
the runner merges them into ``run_dir/findings.json`` after each notebook, so a later
notebook (the report) reads a current file. A writer is the notebook that wrote the
fragment (the runner tells the kernel through ``KPISAT_NOTEBOOK``); writing the same
key twice from one notebook replaces the first fragment, so re-running a notebook by
hand never duplicates effects. Merging concatenates lists and merges dicts, in the
order of the writers' names (the notebooks' two-digit prefixes).

Output is deterministic: fixed key order, NaN written as ``null``, floats as Python
``repr`` (shortest round-trip), so identical runs give identical bytes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from urllib.parse import urlsplit, urlunsplit
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1
FINDINGS_FILE = "findings.json"
MANIFEST_FILE = "manifest.json"
FRAGMENTS_DIR = "fragments"
ARTIFACTS_DIR = "artifacts"
#: Environment variable naming the notebook a kernel executes (set by the runner).
WRITER_ENV = "KPISAT_NOTEBOOK"
#: Column order of an effect row in findings.json (tidy rows minus ``statistic``).
EFFECT_COLUMNS = ("outcome", "term", "model", "scale", "per", "estimate", "std_error",
                  "conf_low", "conf_high", "p_value", "n_obs", "n_clusters", "estimable",
                  "note")
_EFFECT_INTS = ("n_obs", "n_clusters")
#: Column order of a metric row.
METRIC_COLUMNS = ("name", "scope", "quarter", "value", "conf_low", "conf_high", "n")
#: Top-level keys of findings.json, in order; later keys from fragments follow.
TOP_KEYS = ("schema_version", "quarter", "as_of", "effects", "metrics",
            "recommendation", "data_quality")
_DROPPED = ("statistic",)
#: Columns of fit summaries that differ between identical runs (kept out of findings).
_TIMINGS = ("seconds", "jackknife_seconds")


# ---------------------------------------------------------------- JSON-safe values
def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types, deterministically.

    Parameters
    ----------
    value : DataFrame, Series, mapping, sequence, NumPy/pandas scalar or plain value.
        A DataFrame becomes a list of row dicts (column order kept); NaN, NaT, NA and
        infinities become ``None``; dates become ISO strings.

    Returns
    -------
    A value made of dict, list, str, int, float, bool and None only.
    """
    if isinstance(value, pd.DataFrame):
        return [to_jsonable(dict(zip(value.columns, row, strict=True)))
                for row in value.itertuples(index=False, name=None)]
    if isinstance(value, pd.Series):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.date().isoformat() if _is_midnight(value) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _is_midnight(ts: datetime) -> bool:
    return (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0) and ts.tzinfo is None


def dumps(obj: Any) -> str:
    """Serialise ``obj`` as kpisat writes every JSON file (stable bytes).

    Keys keep their insertion order (``sort_keys=False``), NaN is refused (it has
    been turned into null already), indentation is two spaces, and the text ends
    with a newline.
    """
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, sort_keys=False,
                      allow_nan=False) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- fragments
def _writer(writer: str | None) -> str:
    # JupyterLab names the notebook of a kernel in JPY_SESSION_NAME (a path)
    session = Path(os.environ.get("JPY_SESSION_NAME", "")).stem
    name = writer or os.environ.get(WRITER_ENV) or session or "interactive"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_fragment(run_dir: str | Path, key: str, value: Any, *,
                   writer: str | None = None) -> Path:
    """Hand one findings entry on to the runner and later notebooks.

    Parameters
    ----------
    run_dir : the run's folder (the notebooks' ``run_dir`` parameter).
    key : top-level findings key: ``effects``, ``metrics``, ``data_quality``,
        ``recommendation``, ``fit_summaries`` or another name.
    value : a DataFrame or list (concatenated with other writers' lists), a dict
        (merged with other writers' dicts) or a scalar.
    writer : who writes it; default the notebook the runner is executing
        (``KPISAT_NOTEBOOK``), else the notebook JupyterLab runs
        (``JPY_SESSION_NAME``), else ``"interactive"``.

    Returns
    -------
    Path of the fragment file. Writing the same key again from the same writer
    replaces it.
    """
    if not key or not key.replace("_", "").isalnum():
        raise ValueError(f"fragment key {key!r} must be a plain name like 'effects'")
    path = Path(run_dir) / FRAGMENTS_DIR / _writer(writer) / f"{key}.json"
    if key == "effects":
        value = normalise_effects(value)
    elif key == "metrics":
        value = normalise_metrics(value)
    elif key == "fit_summaries":
        value = [{k: v for k, v in row.items() if k not in _TIMINGS}
                 for row in to_jsonable(value)]
    _write_text_atomic(path, dumps(value))
    return path


def write_artifact(run_dir: str | Path, name: str, data: pd.DataFrame) -> Path:
    """Store chart data that is not a finding as ``run_dir/artifacts/<name>.parquet``.

    Parameters
    ----------
    run_dir : the run's folder.
    name : artifact name, e.g. ``km_curves``.
    data : the table to store (index dropped).

    Returns
    -------
    Path of the Parquet file.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"artifact name {name!r} must be a plain name like 'km_curves'")
    path = Path(run_dir) / ARTIFACTS_DIR / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data.reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_artifact(run_dir: str | Path, name: str) -> pd.DataFrame:
    """Read an artifact written by :func:`write_artifact`."""
    return pd.read_parquet(Path(run_dir) / ARTIFACTS_DIR / f"{name}.parquet")


def normalise_effects(value: Any) -> list[dict]:
    """Tidy effect rows as findings.json writes them.

    Drops ``statistic``, orders the columns as findings.md (extra columns follow,
    sorted), turns NaN into None and counts into ints.
    """
    rows = to_jsonable(value)
    if isinstance(rows, dict):
        rows = [rows]
    return [_ordered(r, EFFECT_COLUMNS, ints=_EFFECT_INTS) for r in rows]


def normalise_metrics(value: Any) -> list[dict]:
    """Metric rows as findings.json writes them (name, scope, quarter, value, ...)."""
    rows = to_jsonable(value)
    if isinstance(rows, dict):
        rows = [rows]
    return [_ordered(r, METRIC_COLUMNS, ints=("n",)) for r in rows]


def _ordered(row: dict, columns: tuple[str, ...], *, ints: tuple[str, ...]) -> dict:
    out = {c: row.get(c) for c in columns if c in row}
    for c in ints:
        if isinstance(out.get(c), float) and out[c].is_integer():
            out[c] = int(out[c])
    for c in sorted(set(row) - set(columns) - set(_DROPPED)):
        out[c] = row[c]
    return out


# ---------------------------------------------------------------- merge / read
def _fragments(run_dir: Path) -> list[tuple[str, str, Any]]:
    root = run_dir / FRAGMENTS_DIR
    if not root.is_dir():
        return []
    out = []
    for writer_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(writer_dir.glob("*.json")):
            out.append((writer_dir.name, f.stem, json.loads(f.read_text(encoding="utf-8"))))
    return out


def merge_fragments(run_dir: str | Path, *, quarter: str | None = None,
                    as_of: str | None = None) -> dict:
    """Merge every fragment into ``run_dir/findings.json`` and return the findings.

    Parameters
    ----------
    run_dir : the run's folder.
    quarter, as_of : the run's quarter and as-of date; default from the parameters
        in ``run_dir/manifest.json``.

    Returns
    -------
    The findings dict, keys in findings.md order (schema_version, quarter, as_of,
    effects, metrics, recommendation, data_quality, then other keys sorted).
    """
    run_dir = Path(run_dir)
    if quarter is None or as_of is None:
        params = read_manifest(run_dir).get("parameters", {})
        quarter = quarter if quarter is not None else params.get("quarter")
        as_of = as_of if as_of is not None else params.get("as_of")
    merged: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "quarter": quarter,
                              "as_of": as_of, "effects": [], "metrics": [],
                              "recommendation": None, "data_quality": {}}
    for _writer_name, key, value in _fragments(run_dir):
        if key in ("schema_version", "quarter", "as_of"):
            continue
        merged[key] = _combine(merged.get(key), value)
    ordered = {k: merged[k] for k in TOP_KEYS}
    ordered.update({k: merged[k] for k in sorted(set(merged) - set(TOP_KEYS))})
    _write_text_atomic(run_dir / FINDINGS_FILE, dumps(ordered))
    return ordered


def _combine(old: Any, new: Any) -> Any:
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _combine(out[k], v) if k in out else v
        return out
    return new


def read_findings(run_dir: str | Path) -> dict:
    """Read ``run_dir/findings.json`` (written by :func:`merge_fragments`).

    Raises
    ------
    FileNotFoundError : when the run has no findings yet.
    """
    return json.loads((Path(run_dir) / FINDINGS_FILE).read_text(encoding="utf-8"))


def effects_frame(findings: dict) -> pd.DataFrame:
    """The findings' effect rows as a DataFrame (columns in findings.md order)."""
    rows = findings.get("effects") or []
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS) if not rows else None)


# ---------------------------------------------------------------- manifest
def write_manifest(run_dir: str | Path, manifest: dict) -> Path:
    """Write ``run_dir/manifest.json`` atomically (built by :func:`new_manifest`)."""
    path = Path(run_dir) / MANIFEST_FILE
    _write_text_atomic(path, dumps(manifest))
    return path


def read_manifest(run_dir: str | Path) -> dict:
    """Read ``run_dir/manifest.json``; an empty dict when there is none."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


#: Libraries whose versions can move a digit of the findings.
KEY_LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "lifelines", "pyfixest",
                 "duckdb", "pyarrow", "matplotlib", "papermill", "nbconvert", "jupytext")


def redact_source(source: str | None) -> str:
    """The source as a manifest may show it: any password or token in a URL removed.

    ``postgresql://user:<password>@host/db?password=<password>`` becomes
    ``postgresql://user@host/db``; a path is returned unchanged; None becomes ``""``
    (the sample company).
    """
    if not source:
        return ""
    if "://" not in source:
        return str(source)
    parts = urlsplit(source)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    query = "&".join(q for q in parts.query.split("&")
                     if q and q.split("=", 1)[0].lower() not in _SECRET_QUERY_KEYS)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "token", "secret", "sslpassword",
                      "access_token", "api_key", "apikey"}


def git_commit(root: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the project; ``"unknown"`` outside a git checkout."""
    from . import config

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(root or config.PROJECT_ROOT),
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() or "unknown"


def git_dirty(root: str | Path | None = None) -> bool | None:
    """Whether tracked files differ from the commit (None outside a git checkout)."""
    from . import config

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=Path(root or config.PROJECT_ROOT), capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def library_versions() -> dict[str, str]:
    """Python and the key libraries' versions (``"missing"`` if not installed)."""
    out = {"python": platform.python_version()}
    for name in KEY_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def utc_now() -> str:
    """The current time in UTC, ISO 8601 to the second (``2025-12-31T08:00:00Z``)."""
    return datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_manifest(*, parameters: dict, fingerprint: str, started: str,
                 source_description: str = "", notebooks: list[str] = ()) -> dict:
    """A manifest for a run that is starting.

    Parameters
    ----------
    parameters : the run's parameters (``source`` is redacted here; nothing from the
        environment is ever stored).
    fingerprint : fingerprint of the input tables.
    started : start time (:func:`utc_now`).
    source_description : a human description of the source (no credentials).
    notebooks : names of the notebooks the run will execute, in order.

    Returns
    -------
    dict with ``kpisat_version``, ``git_commit``, ``parameters``,
    ``input_fingerprint``, ``source_description``, ``started``, ``finished``
    (None until the end), ``status``, ``notebooks`` (name, status, seconds),
    ``python`` and ``libraries``.
    """
    from . import __version__

    params = dict(parameters)
    if "source" in params:
        params["source"] = redact_source(params["source"])
    versions = library_versions()
    return {
        "kpisat_version": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "parameters": params,
        "input_fingerprint": fingerprint,
        "source_description": redact_source(source_description) if "://" in str(
            source_description) else source_description,
        "started": started,
        "finished": None,
        "status": "running",
        "notebooks": [{"name": n, "status": "pending", "seconds": None} for n in notebooks],
        "python": versions.pop("python"),
        "platform": f"{sys.platform}-{platform.machine()}",
        "libraries": versions,
    }
