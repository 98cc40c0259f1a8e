"""Model fits cached beside the prepared quarter they were fitted on.

A notebook asks for a fit by name,
``fit_cache.cached(prepared, "churn", models.fit_churn, episodes)``:
the first run on a prepared quarter fits and stores the result; later runs on the
same inputs load it in milliseconds instead of refitting (the Cox jackknife, the
renewal logits and the trade-off bootstrap are most of a run's time).

Where: ``<prepared folder>/fits/<name>-<key>.pkl``. The prepared folder is already
one per input fingerprint, quarter and as-of date (``analysis.prepare``); ``key``
hashes the package's source (``analysis.prepare.code_version``), the Python version
and the versions of the numerical libraries, so a change to any model, or an upgrade,
is a miss. Nothing is cached when the quarter was not prepared into the cache
(``prepared.location`` is None).

What is kept: the value itself when it pickles. A :class:`~analysis.models.tidy.ModelFit`
keeps its effects, its summary and those extras that pickle (library result objects
holding closures are dropped), so a notebook reads ``effects``, ``summary`` and
plain extras (the PH test, coefficient tables, vcov) the same whether the fit came
from the cache or not; pickling preserves every float bit for bit, so findings are
byte-identical either way. A value that does not pickle is returned uncached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Sub-folder of a prepared quarter holding its fits.
FOLDER = "fits"
#: Libraries whose version can move a digit of a fit.
LIBRARIES = ("numpy", "scipy", "pandas", "statsmodels", "lifelines", "pyfixest", "formulaic",
             "scikit-learn")
#: Set to "0" to fit everything afresh (the cache is then neither read nor written).
ENV = "KPISAT_FIT_CACHE"


def cached(prepared: Any, name: str, fit: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fit(*args, **kwargs)`` for ``prepared``, from the cache when it is there.

    Parameters
    ----------
    prepared : an ``analysis.prepare.Prepared`` (its ``location`` is the cache folder).
    name : what is fitted, unique within the quarter (e.g. ``"churn"``); a file name
        part. The arguments are not part of the key: one name, one computation.
    fit, args, kwargs : compute the value on a miss (from ``prepared``'s tables).

    Returns
    -------
    The value (a :class:`~analysis.models.tidy.ModelFit` trimmed to what pickles, see
    the module docstring), from the cache or freshly computed.
    """
    folder = getattr(prepared, "location", None)
    if folder is None or os.environ.get(ENV, "1") == "0":
        return slim(fit(*args, **kwargs))
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
    value = slim(fit(*args, **kwargs))
    _store(path, value)
    log.debug("fit %s in %.1f s, cached in %s", name, time.perf_counter() - t0, path)
    return value


def slim(value: T) -> T:
    """``value`` as the cache keeps it: a ModelFit without the extras that do not pickle."""
    from analysis.models.tidy import ModelFit

    if isinstance(value, ModelFit):
        extras = {k: v for k, v in value.extras.items() if _pickles(v)}
        return ModelFit(effects=value.effects, summary=value.summary, extras=extras)
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


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - whatever a library object raises
        return False
    return True


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
