"""Cluster-robust sandwich, and the wild cluster bootstrap through pyfixest.

``cluster_sandwich`` is the CR1 estimator of the logit and (without the
finite-sample factor, i.e. Lin–Wei) the Cox model, kept in their extras for the
analyst notebooks; the reported errors are the CR3 jackknife
(:mod:`analysis.models.jackknife`, docs/models.md), which CR1 under-covers with
few teams — except above ``JACKKNIFE_MAX_CLUSTERS`` teams, where these sandwiches
are reported. ``wild_cluster_ci`` runs
the restricted wild cluster bootstrap of pyfixest's ``Feols.wildboottest`` (the
``wildboottest`` package: WCR-11, Webb six-point weights, seeded) for few
clusters. The library tests only H0: β = 0 and returns no interval, so the
interval is found the documented way of ``boottest``/fwildclusterboot: invert
the test — the nulls β = b0 the bootstrap does not reject at 1 − level —
bracketing each crossing from the CRV1 interval and bisecting on the library's
p-value. H0: β = b0 is tested as H0: β = 0 on the outcome y − b0·x, the same
regression shifted, with the same seeded weights at every b0.

Speed: pyfixest's ``wildboottest`` refits the model and rebuilds its one-hot
design for every call, and the ``wildboottest`` package compiles its numba
kernel (``compute_denom``, defined inside ``get_denom``) afresh each time
(≈0.35 s of the ≈0.4 s a call costs). :class:`WildTest` therefore builds the
design once from one pyfixest fit (``_model_matrix_one_hot``, exactly what
``wildboottest`` uses) and makes the same ``WildboottestCL`` calls pyfixest
makes, on y − b0·x; the kernel — a pure function of its arguments — is compiled
once per process (:func:`_compiled_once`); the p-values of β = 0 of one model
share one ``WildboottestCL`` set-up (:meth:`WildTest._bootstrap`). The p-value is
the library's own to the last digit (tested against ``Feols.wildboottest``).
"""

from __future__ import annotations

import copy
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import SEED

log = logging.getLogger(__name__)

#: Bootstrap replications of the wild cluster bootstrap.
WILD_REPS = 9_999
#: Webb six-point weights: with few clusters Rademacher has only 2^G distinct draws.
WILD_WEIGHTS = "webb"
#: Fewest clusters (teams) for the wild cluster bootstrap. With G clusters the
#: restricted bootstrap has at most 6^G distinct Webb draws (2^G Rademacher) and
#: its test inverts to an interval that is often unbounded or far too wide for
#: G < 5 (MacKinnon & Webb 2017, 2018: WCR is unreliable below ~5-6 clusters);
#: below this no cluster-robust interval is reported at all.
WILD_MIN_CLUSTERS = 5
#: Up to this many teams (and from ``MIN_CLUSTERS``, where the analytic errors are
#: reported) the linear models also carry wild-bootstrap p-values of β = 0 for the
#: analyst notebooks, beside the analytic ones (MacKinnon, Nielsen & Webb 2023: the
#: two should agree when cluster-robust inference is reliable; a gap is a warning).
WILD_COMPARE_MAX_CLUSTERS = 40
#: Replications for those side-by-side p-values: Monte Carlo s.e. of a p-value
#: near 0.05 is sqrt(0.05·0.95/1999) ≈ 0.005, enough to read it beside another.
WILD_COMPARE_REPS = 1_999
#: Bisection stops when the bracket is narrower than this share of the CRV1 std.
#: error; the midpoint is then within 0.025·se of the crossing, well below the
#: Monte Carlo error of a bootstrap bound at 9 999 draws.
BISECT_TOL = 0.05
#: Bracket expansions (each doubles the distance from the estimate) before a bound
#: is declared unbounded.
MAX_EXPANSIONS = 6
#: Most library p-value calls for one interval (both bounds and the p-value at 0);
#: with the CRV1 bracket an interval usually takes 12-16.
MAX_WILD_CALLS = 40


def cluster_scores(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Sum per-row score contributions (n, p) within clusters -> (G, p).

    Rows are G clusters in sorted label order; each sum adds its rows in row order.
    """
    g, inverse = _cluster_index(np.asarray(clusters))
    out = np.zeros((g, scores.shape[1]))
    np.add.at(out, inverse, np.asarray(scores, float))
    return out


def _cluster_index(clusters: np.ndarray) -> tuple[int, np.ndarray]:
    """(G, each row's cluster 0..G−1 in sorted label order): ``np.unique``'s inverse,
    by counting when the labels are small non-negative integers (e.g. factor codes)."""
    if (clusters.dtype.kind in "iu" and len(clusters) and clusters.min() >= 0
            and clusters.max() < 4 * len(clusters)):
        present = np.bincount(clusters) > 0
        return int(present.sum()), (np.cumsum(present) - 1)[clusters]
    codes, inverse = np.unique(clusters, return_inverse=True)
    return len(codes), inverse.reshape(-1)


def cluster_sandwich(bread_inv: np.ndarray, scores: np.ndarray, clusters: np.ndarray, *,
                     n_params: int | None = None, small_sample: bool = True) -> np.ndarray:
    """Cluster-robust covariance ``c · B⁻¹ (Σ_g s_g s_gᵀ) B⁻¹``.

    Parameters
    ----------
    bread_inv : inverse of the information (negative Hessian), (p, p).
    scores : per-row score contributions, (n, p).
    clusters : cluster label per row.
    n_params : parameters counted in the (N-1)/(N-K) factor; None omits that factor.
    small_sample : apply c = G/(G-1) [· (N-1)/(N-K)] (CR1); False gives the raw
        sandwich (Lin–Wei for Cox, as R ``coxph(cluster=)`` and lifelines ``robust``).
    """
    sg = cluster_scores(scores, clusters)
    meat = sg.T @ sg
    g, n = sg.shape[0], scores.shape[0]
    c = 1.0
    if small_sample:
        c = g / (g - 1) if g > 1 else np.nan
        if n_params is not None:
            c *= (n - 1) / (n - n_params)
    return c * bread_inv @ meat @ bread_inv


@dataclass
class WildResult:
    """Wild cluster bootstrap result for one coefficient."""

    estimate: float
    conf_low: float
    conf_high: float
    p_value: float
    reps: int
    n_clusters: int
    calls: int = 0
    note: str = ""

    @property
    def finite(self) -> bool:
        """True when both bounds and the p-value are finite numbers."""
        return bool(np.isfinite([self.conf_low, self.conf_high, self.p_value]).all())


class WildTest:
    """pyfixest's wild cluster bootstrap p-value of H0: β_term = b0 in a linear FE model.

    Parameters
    ----------
    data : rows of the regression (no missing values).
    y, terms, fe : outcome column, regressor columns, fixed-effect columns.
    cluster : cluster column.
    weights : regression-weight column, or None. pyfixest's bootstrap refuses WLS,
        so a weighted model is bootstrapped as the OLS it equals: every column,
        the fixed-effect dummies included, times √w (same coefficients, same
        CRV1 scores, same wild bootstrap draws).
    reps, seed : bootstrap replications and seed (the same draws at every b0).
    """

    def __init__(self, data: pd.DataFrame, y: str, terms: list[str], fe: list[str],
                 cluster: str, *, weights: str | None = None, reps: int = WILD_REPS,
                 seed: int = SEED):
        self.terms, self.cluster, self.reps, self.seed = list(terms), cluster, reps, seed
        self.calls = 0
        self._design, self._base = None, None
        self._fe_absorbed = weights is None
        # the bootstrap (numba) needs numeric cluster labels
        base = data.reset_index(drop=True).assign(
            **{cluster: pd.factorize(data[cluster])[0].astype(np.int64)})
        if weights is None:
            self.frame = base[[*terms, *fe, cluster]].copy()
            self.y = base[y].to_numpy(float)
            self.rhs = " + ".join(terms) + " | " + " + ".join(fe)
        else:
            sw = np.sqrt(base[weights].to_numpy(float))
            dummies = pd.get_dummies(base[fe].astype(str), drop_first=False, dtype=float)
            dummies = dummies.iloc[:, _independent(dummies.to_numpy())]
            dummies.columns = [f"fe_{j}" for j in range(dummies.shape[1])]
            self.frame = pd.concat([base[terms].astype(float).mul(sw, axis=0),
                                    dummies.mul(sw, axis=0), base[[cluster]]], axis=1)
            self.y = base[y].to_numpy(float) * sw
            self.rhs = " + ".join([*terms, *dummies.columns]) + " - 1"

    def fit(self, term: str | None = None, b0: float = 0.0):
        """pyfixest OLS of (y − b0·term) on the regressors, CRV1 by cluster."""
        frame = self.frame.assign(_y=self.y - (b0 * self.frame[term] if term else 0.0))
        import pyfixest as pf

        from analysis.models.fe_order import formula_fe_order

        with warnings.catch_warnings(), formula_fe_order():
            warnings.simplefilter("ignore")
            return pf.feols("_y ~ " + self.rhs, data=frame, vcov={"CRV1": self.cluster})

    def design(self):
        """(Y, X, column names, cluster array) as pyfixest's ``wildboottest`` builds them.

        The weighted route's model has no fixed effects and no intercept, so
        pyfixest's design is the frame's columns as they are (its one-hot step only
        divides by √1): they are taken directly instead of through a ~200-column
        formula. The fixed-effect route takes pyfixest's own one-hot design.
        """
        if self._design is None:
            if self._fe_absorbed:
                fit = self.fit()
                y, x, names = fit._model_matrix_one_hot()
                clusters = fit._data[self.cluster].to_numpy().flatten()
            else:
                names = [c for c in self.frame.columns if c != self.cluster]
                x = self.frame[names].to_numpy(float)
                y, clusters = self.y, self.frame[self.cluster].to_numpy()
            self._design = (np.asarray(y, float).ravel(), np.asarray(x, float), list(names),
                            clusters)
        return self._design

    def _bootstrap(self, y: np.ndarray | None, r: np.ndarray):
        """A ``WildboottestCL`` of outcome ``y`` (None: the model's own) testing ``r``.

        Its ``__init__`` splits X and Y by cluster and inverts X'X (most of a call's
        cost); of the test only ``RtXXinv`` depends on R, and only ``get_weights``
        uses the seeded generator. So for the model's own outcome one instance is
        built and each test gets a shallow copy with R, ``RtXXinv`` and a freshly
        seeded generator — the state ``__init__`` would give it (the later steps set
        new attributes and change no shared array).
        """
        from wildboottest.wildboottest import WildboottestCL

        _, x, _, clusters = self.design()
        if y is not None:
            return WildboottestCL(X=x, Y=y, cluster=clusters, R=r, B=self.reps,
                                  seed=self.seed, parallel=False)
        if self._base is None:
            self._base = WildboottestCL(X=x, Y=self.design()[0], cluster=clusters, R=r,
                                        B=self.reps, seed=self.seed, parallel=False)
        boot = copy.copy(self._base)
        boot.R, boot.RtXXinv = r, np.matmul(r, boot.tXXinv)
        boot.rng = np.random.default_rng(seed=self.seed)
        return boot

    def p_value(self, term: str, b0: float = 0.0) -> float:
        """Bootstrap p-value of H0: β_term = b0 (two-tailed, WCR-11, Webb weights).

        The calls of pyfixest ``Feols.wildboottest(param=term, reps, seed,
        weights_type="webb")`` (impose_null, bootstrap_type "11", k_adj, G_adj),
        on the outcome y − b0·x with the design built once.
        """
        y, x, names, clusters = self.design()
        j = names.index(term)
        r = np.zeros(len(names))
        r[j] = 1.0
        self.calls += 1
        with warnings.catch_warnings(), _compiled_once():
            warnings.simplefilter("ignore")
            boot = self._bootstrap(y - b0 * x[:, j] if b0 else None, r)
            boot.get_scores(bootstrap_type="11", impose_null=True, adj=True, cluster_adj=True)
            boot.get_weights(weights_type=WILD_WEIGHTS)
            boot.get_numer()
            boot.get_denom()
            boot.get_tboot()
            boot.get_vcov()
            boot.get_tstat()
            boot.get_pvalue(pval_type="two-tailed")
        return float(np.asarray(boot.pvalue, dtype=np.float64))


_KERNELS: dict = {}


@contextmanager
def _compiled_once():
    """Let ``wildboottest`` reuse its numba kernels instead of recompiling them per call.

    The package decorates a nested function with ``njit`` inside ``get_denom``, so
    every call compiles it again. While this context is active its ``njit`` returns
    the dispatcher compiled the first time for the same code object and options
    (only for functions without closure variables: their result depends on their
    arguments alone, so the compiled kernel is the same). The kernel is also cached on
    disk (numba's ``cache=True``), so later kernels of a run load it instead of
    compiling it (about 1 s of CPU each).
    """
    import wildboottest.wildboottest as wb

    original = wb.njit

    def njit(*args, **kwargs):
        if args and callable(args[0]):  # bare @njit
            return njit(**kwargs)(args[0])

        def decorate(fn):
            if fn.__closure__:
                return original(*args, **kwargs)(fn)
            key = (fn.__code__, tuple(sorted(kwargs.items())), args)
            if key not in _KERNELS:
                _KERNELS[key] = original(*args, **{**kwargs, "cache": True})(fn)
            return _KERNELS[key]
        return decorate

    wb.njit = njit
    try:
        yield
    finally:
        wb.njit = original


def _independent(z: np.ndarray, rtol: float = 1e-9) -> list[int]:
    """Columns of ``z`` kept, left to right, when each must add rank (drops redundant dummies).

    One QR decomposition without pivoting instead of a rank per column: ``|R[j, j]|``
    is (up to rounding) the norm of column j's part orthogonal to the columns
    before it, so column j adds rank when that norm is not negligible against the
    column's own norm. Columns beyond the number of rows never add rank.
    """
    from scipy.linalg import qr

    if z.shape[1] == 0:
        return []
    r = qr(z, mode="r")[0]
    residual = np.abs(np.diag(r))
    norms = np.linalg.norm(z, axis=0)
    return [j for j in range(len(residual)) if norms[j] > 0 and residual[j] > rtol * norms[j]]


def wild_cluster_ci(test: WildTest, term: str, *, level: float = 0.95,
                    tol: float = BISECT_TOL, max_calls: int = MAX_WILD_CALLS) -> WildResult:
    """Wild cluster bootstrap p-value (β = 0) and interval (test inversion) for ``term``.

    The interval holds the nulls b0 whose bootstrap p-value exceeds 1 − level.
    Each bound is bracketed from the CRV1 bound est ± t(G−1)·se: if the bootstrap
    rejects there the crossing lies between the estimate (p = 1) and it, else the
    distance is doubled (at most ``MAX_EXPANSIONS`` times). Bisection then narrows
    the bracket to ``tol``·se and the bound is its midpoint. A bound not found
    within the expansions or ``max_calls`` library calls is NaN and named in
    ``note`` (``WildResult.finite`` is then False: the caller reports no interval).
    """
    fit = test.fit()
    est, se = float(fit.coef()[term]), float(fit.se()[term])
    g = int(test.frame[test.cluster].nunique())
    alpha = 1 - level
    calls0 = test.calls
    budget = lambda: max_calls - (test.calls - calls0)  # noqa: E731
    if not (np.isfinite(est) and np.isfinite(se) and se > 0):
        return WildResult(est, np.nan, np.nan, np.nan, test.reps, g, 0,
                          "no finite CRV1 standard error to scale the inversion")
    p0 = test.p_value(term, 0.0)
    half = float(stats.t.ppf(0.5 + level / 2, max(g - 1, 1))) * se
    bounds, notes = [], []
    for sign in (-1.0, 1.0):
        in_b, out_b, found = est, est + sign * half, False
        for _ in range(MAX_EXPANSIONS + 1):
            if budget() <= 0:
                break
            if test.p_value(term, out_b) <= alpha:
                found = True
                break
            in_b, out_b = out_b, est + 2 * (out_b - est)
        if not found:
            side = "lower" if sign < 0 else "upper"
            notes.append(f"{side} bound not reached within {abs(out_b - est) / se:.0f} "
                         "standard errors")
            log.warning("%s: wild bootstrap %s bound unbounded", term, side)
            bounds.append(np.nan)
            continue
        while abs(out_b - in_b) > tol * se and budget() > 0:
            mid = 0.5 * (in_b + out_b)
            if test.p_value(term, mid) > alpha:
                in_b = mid
            else:
                out_b = mid
        if abs(out_b - in_b) > tol * se:
            notes.append(f"bound not resolved within {max_calls} bootstrap calls")
            bounds.append(np.nan)
            continue
        bounds.append(0.5 * (in_b + out_b))
    return WildResult(estimate=est, conf_low=float(bounds[0]), conf_high=float(bounds[1]),
                      p_value=p0, reps=test.reps, n_clusters=g,
                      calls=test.calls - calls0, note="; ".join(notes))
