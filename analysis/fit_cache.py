"""Model fits cached beside the prepared quarter they were fitted on.

A notebook asks for a fit by name,
``fit_cache.cached(prepared, "churn", "analysis.models:fit_churn", episodes)``:
the first run on a prepared quarter fits and stores the result; later runs on the
same inputs load it in milliseconds instead of refitting (the Cox jackknife, the
renewal logits and the trade-off bootstrap are most of a run's time).

Where: ``<prepared folder>/fits/<name>-<key>.pkl``. The prepared folder is already
one per input fingerprint, quarter and as-of date (``analysis.prepare``); ``key``
hashes the package's source (``analysis.prepare.code_version``), the Python version
and the versions of the numerical libraries, so a change to any model, or an upgrade,
is a miss. Nothing is cached when the quarter was not prepared into the cache
(``prepared.location`` is None).

What is kept: a :class:`~analysis.models.tidy.ModelFit` becomes a :class:`Fit` (the
same ``effects``, ``summary`` and ``extras`` attributes) whose extras are plain data
only (pandas, numpy, builtins: the PH test, coefficient tables, vcov); library result
objects are dropped, on a miss as on a hit, so a notebook sees the same fit either
way, and loading a cached fit imports neither the models nor their libraries. Any
other value is kept as it is when it pickles (else it is returned uncached). Pickling
preserves every float bit for bit, so findings are byte-identical either way.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Sub-folder of a prepared quarter holding its fits.
FOLDER = "fits"
#: Libraries whose version can move a digit of a fit.
LIBRARIES = ("numpy", "scipy", "pandas", "statsmodels", "lifelines", "pyfixest", "formulaic",
             "scikit-learn")
#: Set to "0" to fit everything afresh (the cache is then neither read nor written).
ENV = "KPISAT_FIT_CACHE"


def cached(prepared: Any, name: str, fit: Callable[..., Any] | str, *args: Any,
           **kwargs: Any) -> Any:
    """``fit(*args, **kwargs)`` for ``prepared``, from the cache when it is there.

    Parameters
    ----------
    prepared : an ``analysis.prepare.Prepared`` (its ``location`` is the cache folder).
    name : what is fitted, unique within the quarter (e.g. ``"churn"``); a file name
        part. The arguments are not part of the key: one name, one computation.
    fit, args, kwargs : compute the value on a miss (from ``prepared``'s tables).
        ``fit`` may be named ``"package.module:function"``: it is then imported only
        on a miss, so a kernel whose fits are all cached never imports the model
        libraries (statsmodels, lifelines, pyfixest: about 2 s of a kernel's start).

    Returns
    -------
    The value (a ModelFit as a :class:`Fit`, see the module docstring), from the cache
    or freshly computed.
    """
    folder = getattr(prepared, "location", None)
    if folder is None or os.environ.get(ENV, "1") == "0":
        return slim(_resolve(fit)(*args, **kwargs))
    path = Path(folder) / FOLDER / f"{name}-{key()}.pkl"
    try:
        with open(path, "rb") as f:
            value = pickle.load(f)
        log.debug("fit %s loaded from %s", name, path)
        return value
    except FileNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 - a damaged cache entry is refitted
        log.warning("refitting %s: the cached fit %s could not be read (%s)", name, path, e)
    t0 = time.perf_counter()
    value = slim(_resolve(fit)(*args, **kwargs))
    _store(path, value)
    log.debug("fit %s in %.1f s, cached in %s", name, time.perf_counter() - t0, path)
    return value


@dataclass
class Fit:
    """A model fit as the cache keeps it: a ModelFit's tidy rows and its plain-data extras."""

    effects: pd.DataFrame
    summary: pd.DataFrame
    extras: dict[str, Any] = field(default_factory=dict)


def slim(value: Any) -> Any:
    """``value`` as the cache keeps it: a ModelFit becomes a :class:`Fit`."""
    kind = type(value)
    if f"{kind.__module__}.{kind.__qualname__}" == "analysis.models.tidy.ModelFit":
        extras = {k: v for k, v in value.extras.items() if _plain(v)}
        return Fit(effects=value.effects, summary=value.summary, extras=extras)
    return value


@lru_cache(maxsize=1)
def key() -> str:
    """Hash of the package's source, Python and the numerical libraries' versions."""
    from analysis.prepare import code_version

    h = hashlib.sha256(code_version().encode())
    h.update(sys.version.encode())
    for lib in LIBRARIES:
        try:
            version = metadata.version(lib)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"\0{lib}={version}".encode())
    return h.hexdigest()[:16]


def _resolve(fit: Callable[..., Any] | str) -> Callable[..., Any]:
    """``fit`` itself, or the function a ``"module:function"`` string names."""
    if callable(fit):
        return fit
    module, _, function = fit.partition(":")
    return getattr(importlib.import_module(module), function)


def _plain(value: Any) -> bool:
    """Whether ``value`` is data that pickles with pandas, numpy and builtins alone."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic,
                                           np.ndarray, pd.DataFrame, pd.Series, pd.Index)):
        return not isinstance(value, np.ndarray) or value.dtype != object
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _store(path: Path, value: Any) -> None:
    """Write atomically (a concurrent reader sees the whole file or none); never fails."""
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - an unpicklable value is simply not cached
        log.debug("not caching %s: %s", path.name, e)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not cache the fit in %s: %s", path, e)
        tmp.unlink(missing_ok=True)
