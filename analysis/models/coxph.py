"""Cox proportional hazards on (start, stop] rows: lifelines fits, we add the sandwich.

The coefficients, the model-based variance (inverse information) and the partial
log-likelihood come from lifelines' Newton–Raphson for ``CoxPHFitter`` with
``entry_col`` (delayed entry: row i is at risk on (start_i, stop_i]) and ``strata``
— the same Efron partial likelihood as R ``coxph(Surv(start, stop, event) ~ ... +
strata(s))`` (lifelines evaluates it with ``CoxTimeVaryingFitter``'s risk sets
``start < t <= stop``). What lifelines does not give is a cluster-robust variance
that respects delayed entry: its ``cluster_col`` residuals assume every row is at
risk from time 0. :func:`cox_fit` therefore adds the per-row score residuals of
:mod:`analysis.models.cox_residuals` at lifelines' coefficients, and
:meth:`CoxFit.cov_robust` turns their cluster sums into the Lin–Wei sandwich with
lifelines' variance matrix as the bread.

Speed (docs/models.md, "Cost"): lifelines evaluates the likelihood with a Python
loop over the event times of every stratum (≈ 2 s per Newton step with 1 200 team
strata and 1.6M episodes). :func:`cox_fit` therefore (1) passes lifelines only the
rows that are at risk at some event time of their stratum (the others add nothing
to the likelihood or the residuals), (2) starts lifelines' Newton–Raphson at the
maximum found with the vectorised Efron derivatives of
:func:`analysis.models.cox_residuals.efron_derivatives`, so that lifelines
evaluates its own score and Hessian there once, finds the Newton decrement below
its ``precision`` and stops (if not, it simply iterates on, as from zero), and (3)
skips what ``CoxPHFitter.fit`` computes afterwards and we never use (baseline
hazards and survival, summary frames). The estimates are lifelines' (its stopping
rule, its Hessian); the starting point only saves its iterations. lifelines'
per-stratum gradient function gets numpy slices of each stratum's rows (what
``.values`` of its pandas selections would give), and a caller may pass the design
as a function of the rows, so that only the rows at risk are ever built.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, sparse

from analysis.memory import return_free_memory
from analysis.models.clustered import _cluster_index, cluster_sandwich
from analysis.models.cox_residuals import _RiskSets, efron_derivatives, efron_residuals

log = logging.getLogger(__name__)

#: lifelines Newton–Raphson options. ``precision`` bounds the last step (on
#: lifelines' standardised scale) far below the 1e-6 the tests hold coefficients
#: to; ``r_precision`` is R ``coxph``'s relative log-likelihood rule (1e-9);
#: ``step_size`` 1.0 is a plain Newton step, as R takes.
FIT_OPTIONS = {"precision": 1e-12, "r_precision": 1e-9, "step_size": 1.0, "max_steps": 50}
#: Starting-point search (:func:`_starting_point`): Newton steps on the vectorised
#: Efron derivatives until the Newton decrement (scale-free, the quantity lifelines
#: compares with ``precision``) is below ``START_DECREMENT``; at most
#: ``START_MAX_STEPS`` steps, each halved up to ``START_MAX_HALVINGS`` times.
START_DECREMENT, START_MAX_STEPS, START_MAX_HALVINGS = 1e-8, 30, 30


@dataclass
class CoxFit:
    """Result of :func:`cox_fit`.

    Attributes
    ----------
    params : coefficients (lifelines ``params_``).
    cov_naive : model-based covariance, the inverse information (lifelines ``variance_matrix_``).
    loglik, loglik_null : partial log-likelihood at ``params`` and at zero (lifelines).
    score_rows : the input rows in some risk set (in lifelines' order; the other rows
        have zero residuals).
    score_at_risk : their score residuals (len(score_rows), p) at ``params``.
    n_rows : number of input rows.
    schoenfeld : Schoenfeld residuals of the event rows (n_events, p).
    event_times : time of each event row (same order as ``schoenfeld``).
    n_events, converged : bookkeeping.
    score_residuals : (property) per-row score residuals (n_rows, p), zero for rows in no
        risk set; their sum is the score (≈ 0). Built on access: at company scale the
        full matrix is 200 MB of mostly what ``score_at_risk`` holds.
    """

    params: np.ndarray
    cov_naive: np.ndarray
    loglik: float
    loglik_null: float
    score_rows: np.ndarray
    score_at_risk: np.ndarray
    n_rows: int
    schoenfeld: np.ndarray
    event_times: np.ndarray
    n_events: int
    converged: bool

    @property
    def score_residuals(self) -> np.ndarray:
        """Per-row score residuals (n_rows, p); zero for rows in no risk set."""
        out = np.zeros((self.n_rows, self.score_at_risk.shape[1]))
        out[self.score_rows] = self.score_at_risk
        return out

    def cov_robust(self, clusters, *, small_sample: bool = False) -> np.ndarray:
        """Lin–Wei cluster-robust covariance ``V (Σ_g s_g s_gᵀ) V`` with V = ``cov_naive``.

        ``small_sample=True`` multiplies by G/(G−1); the default is the raw sandwich
        of R ``coxph(cluster=)`` and lifelines ``robust=True``.
        """
        sums = _cluster_sums(self.score_at_risk, self.score_rows, np.asarray(clusters))
        # the cluster sums are the scores of G one-row clusters (in the same label order)
        return cluster_sandwich(self.cov_naive, sums, np.arange(len(sums)),
                                small_sample=small_sample)


def _cluster_sums(score: np.ndarray, rows: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Σ of the score residuals within each cluster (G, p), clusters in sorted label order.

    The sums :func:`analysis.models.clustered.cluster_scores` forms from the full
    per-row matrix, bit for bit: each cluster adds its rows one after another in
    ascending row order (the rows not in ``rows`` have zero residuals), here as the
    product with a sparse cluster-by-residual indicator whose rows list their
    residuals in that order (scipy adds the products of a row in stored order).
    """
    g, inverse = _cluster_index(clusters)
    position = np.full(len(clusters), -1)
    position[rows] = np.arange(len(rows))
    ascending = position[position >= 0]          # residual rows by ascending input row
    inverse = inverse[rows[ascending]]
    members = ascending[np.argsort(inverse, kind="stable")]
    indptr = np.r_[0, np.cumsum(np.bincount(inverse, minlength=g))]
    indicator = sparse.csr_matrix((np.ones(len(members)), members, indptr),
                                  shape=(g, len(rows)))
    return np.asarray(indicator @ score).reshape(g, score.shape[1])


def cox_fit(start, stop, event, x, strata=None, *, names: Sequence[str] | None = None
            ) -> CoxFit:
    """Fit an Efron Cox model with strata and delayed entry (lifelines) plus its residuals.

    Parameters
    ----------
    start, stop : (n,) risk interval (start, stop] of each row; start < stop.
    event : (n,) 1 if the event happens at ``stop``.
    x : (n, p) covariates (constant within a row's interval), array or DataFrame; or a
        function of an index array returning those rows of the covariates as a new
        array (only the rows at risk are then built, twice: lifelines standardises
        the first in place; ``names`` is required).
    strata : (n,) stratum labels, or None.
    names : column names (default: the DataFrame's, else x0..x{p-1}).

    Returns
    -------
    CoxFit
        Residuals have one row per input row (zero for rows in no risk set).
    """
    xa = x if callable(x) else np.asarray(x, float)
    if names is None:
        if callable(x):
            raise TypeError("cox_fit needs names with a covariate function")
        names = list(x.columns) if isinstance(x, pd.DataFrame) else [f"x{j}" for j in
                                                                      range(xa.shape[1])]
    names = list(names)
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    event = np.asarray(event).astype(int)
    codes = None if strata is None else pd.factorize(pd.Series(np.asarray(strata)))[0]
    fit = _lifelines_fit(start, stop, event, xa, codes, names)
    converged = _converged(fit["warnings"])
    if not converged:
        log.warning("Cox fit (lifelines) did not converge")
    # popped: the sorted copy of the design and the risk sets are freed with the call
    # the residuals overwrite the (rebuilt) design: one n×p array at a time
    res = efron_residuals(*fit.pop("rows_sorted"), fit["params"], fit["codes"],
                          risk_sets=fit.pop("risk_sets"), overwrite_x=fit["rebuilt"])
    return CoxFit(params=fit["params"], cov_naive=fit["cov"], loglik=fit["loglik"],
                  loglik_null=fit["loglik_start"], score_rows=fit["rows"],
                  score_at_risk=res.score, n_rows=len(start), schoenfeld=res.schoenfeld,
                  event_times=res.event_times, n_events=int(event.sum()), converged=converged)


def _lifelines_fit(start, stop, event, x, codes, names, beta0=None, *,
                   design_after: bool = True) -> dict:
    """lifelines' Newton–Raphson on the rows at risk, presorted, from the Efron maximum.

    Returns a dict: ``params``, ``cov``, ``loglik`` (lifelines', columns in ``names``
    order), ``warnings`` (caught during the fit), ``loglik_start`` (Efron
    log-likelihood at ``beta0``, zero by default), ``rows`` (the input rows used, in
    lifelines' order), ``rows_sorted`` ((start, stop, event, x) of those rows),
    ``codes`` (their strata), ``risk_sets`` (their :class:`_RiskSets`) and ``rebuilt``.

    With ``x`` a function (returning a fresh array) lifelines standardises the design
    in place and, if ``design_after``, it is built again for ``rows_sorted``
    (``rebuilt`` True: that array is the caller's to overwrite), so that a
    million-row design is never held twice; without ``design_after`` the x of
    ``rows_sorted`` is None.
    """
    # only rows in some risk set enter the likelihood and the residuals; sorted as
    # lifelines sorts (stratum, stop, event), so its own sort finds them in order
    full = _RiskSets(start, stop, event, codes, bookkeeping_only=True)
    at_risk = np.flatnonzero(full.at_risk())
    sort = _sort_order(stop[at_risk], event[at_risk], None if codes is None else codes[at_risk])
    rows = at_risk[sort]
    start, stop, event = start[rows], stop[rows], event[rows]
    codes = None if codes is None else codes[rows]
    rs = full.subset(rows, stop)
    del full
    if design_after:   # the full fit: the bookkeeping of every row, before the design
        return_free_memory()
    build = x if callable(x) else None
    x = np.asarray(build(rows), float) if build is not None else x[rows]
    init, loglik_start = _starting_point(rs, x, beta0)
    if init is None:
        init = beta0
    fitter = _semiparametric_class()()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, loglik, cov = fitter.newton_raphson_sorted(
            x, names, start, stop, event, codes, init, overwrite=build is not None)
    if build is not None:   # lifelines standardised the design in place
        x = None
        x = np.asarray(build(rows), float) if design_after else None
    order = [fitter.params_index.index(c) for c in names]
    return {"params": params[order], "cov": cov[np.ix_(order, order)], "loglik": loglik,
            "warnings": caught, "loglik_start": loglik_start, "rows": rows,
            "rebuilt": build is not None,
            "rows_sorted": (start, stop, event, x), "codes": codes, "risk_sets": rs}


def _sort_order(stop, event, codes) -> np.ndarray:
    """``np.lexsort`` by (stratum, stop, event): lifelines' order, ties in row order.

    With integer stop times (days) and stratum codes, one stable sort of a single
    integer key gives the same permutation at a third of the cost.
    """
    keys = (event, stop) if codes is None else (event, stop, codes)
    e = np.asarray(event)
    c = np.zeros(len(stop), np.int64) if codes is None else np.asarray(codes)
    if (len(stop) == 0 or e.dtype.kind not in "biu" or c.dtype.kind not in "iu"
            or not np.isfinite(stop).all() or not np.array_equal(stop, np.round(stop))
            or e.min() < 0 or e.max() > 1 or c.min() < 0):
        return np.lexsort(keys)
    t = (stop - stop.min()).astype(np.int64)
    span = int(t.max()) + 1
    if (int(c.max()) + 1) * span * 2 >= 2**62:
        return np.lexsort(keys)
    return np.argsort((c.astype(np.int64) * span + t) * 2 + e.astype(np.int64), kind="stable")


def _starting_point(rs: _RiskSets, x: np.ndarray, beta0: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, float]:
    """The maximum of the Efron partial likelihood by vectorised Newton steps.

    Only lifelines' starting point (:func:`_lifelines_fit`). Newton steps start at
    ``beta0`` (default zero) and are halved while the log-likelihood falls; once the
    Newton decrement is below ``START_DECREMENT`` the last step is taken and the point
    returned (Newton's quadratic convergence puts the next decrement near rounding
    level, far below lifelines' ``precision``). Returns (coefficients, or None when no
    finite maximum was found, e.g. a singular information: lifelines then starts at
    ``beta0`` as it would have; the log-likelihood at ``beta0``).
    """
    beta = np.zeros(x.shape[1]) if beta0 is None else np.asarray(beta0, float)
    ll, score, info = efron_derivatives(rs, x, beta)
    ll_null = ll
    try:
        for _ in range(START_MAX_STEPS):
            step = np.linalg.solve(info, score)
            decrement = float(score @ step) / 2
            if not np.isfinite(decrement):
                return None, ll_null
            if decrement < START_DECREMENT:
                return beta + step, ll_null
            for _ in range(START_MAX_HALVINGS):
                new = efron_derivatives(rs, x, beta + step)
                if np.isfinite(new[0]) and new[0] >= ll:
                    break
                step = step / 2
            else:
                return None, ll_null
            beta = beta + step
            ll, score, info = new
    except np.linalg.LinAlgError:
        return None, ll_null
    return None, ll_null


def _converged(caught) -> bool:
    """lifelines' own verdicts only ("failed to converge", or a last Newton step still
    large: non-unique maximum); "this may harm convergence" hints do not count."""
    return not any(("failed to converge" in str(w.message))
                   or ("norm(delta) is still high" in str(w.message)) for w in caught)


def cox_coefficients(frame: pd.DataFrame, names: Sequence[str], *, stratified: bool = True,
                     start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Only the coefficients of an Efron Cox fit, warm-started: for jackknife refits.

    Parameters
    ----------
    frame : columns ``names`` plus ``_start``, ``_stop``, ``_event`` (and ``_stratum``).
    names : covariate columns.
    stratified : stratify by ``_stratum``.
    start : starting coefficients (original scale), e.g. the full-sample estimate;
        None starts at zero as ``CoxPHFitter.fit`` does.

    Returns
    -------
    (coefficients in the order of ``names``, converged)
        lifelines' Newton–Raphson (same ``FIT_OPTIONS``) as in :func:`cox_fit`:
        rows at risk only, presorted, started at the Efron maximum found from
        ``start``; no residuals, baseline hazards or standard errors.
    """
    return refit_coefficients(frame["_start"].to_numpy(float), frame["_stop"].to_numpy(float),
                              frame["_event"].to_numpy(int), frame[list(names)].to_numpy(float),
                              frame["_stratum"].to_numpy() if stratified else None,
                              list(names), start)


def refit_coefficients(start, stop, event, x, codes, names: Sequence[str],
                       beta0: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """:func:`cox_coefficients` on arrays: ``x`` an (n, p) array or, as in :func:`cox_fit`,
    a function of the row indices at risk returning their covariates (a new array);
    ``codes`` integer stratum codes or None; ``beta0`` the starting coefficients (None: zero)."""
    xa = x if callable(x) else np.asarray(x, float)
    fit = _lifelines_fit(np.asarray(start, float), np.asarray(stop, float),
                         np.asarray(event).astype(int), xa, codes, list(names),
                         None if beta0 is None else np.asarray(beta0, float),
                         design_after=False)
    return fit["params"], _converged(fit["warnings"])


#: Rows per block of :func:`_column_std` (temporaries of a few MB).
STD_BLOCK = 65_536


def _column_std(centred: np.ndarray) -> np.ndarray:
    """``values.std(0, ddof=1)`` of the columns whose centred values are ``centred``
    (``values - values.mean(0)``), bit for bit, without numpy's n×p temporary.

    numpy's axis-0 sum of a C-ordered array adds the rows one after another; the
    squares are summed by blocks of rows with the running sum carried into each
    block's sum as its first row, which is that same sequence of additions.
    """
    total = np.zeros(centred.shape[1])
    for a in range(0, len(centred), STD_BLOCK):
        block = centred[a:a + STD_BLOCK]
        total = np.add.reduce(np.vstack([total[None], block * block]), axis=0)
    return np.sqrt(total / (len(centred) - 1))


_CLASS = None


def _semiparametric_class():
    """lifelines' Breslow-baseline Cox fitter, reduced to its Newton–Raphson.

    ``CoxPHFitter()`` with the default ``baseline_estimation_method="breslow"`` is a
    thin wrapper that fits ``SemiParametricPHFitter``. Its ``fit`` preprocesses
    (sorts by stratum and time, checks), standardises the columns, runs
    ``_newton_raphson_for_efron_model`` and then computes what we never use:
    per-stratum "central values" through ``DataFrame.describe``, Breslow baseline
    hazards and survival per stratum, predictions and summary frames (at 1 200
    strata more time than the Newton steps). :meth:`newton_raphson_sorted` builds what
    the preprocessing returns for presorted rows, standardises as ``fit`` does, runs
    the same Newton–Raphson and returns its result on the original scale (tested
    against ``CoxPHFitter``).
    """
    global _CLASS
    if _CLASS is None:
        from lifelines import CoxTimeVaryingFitter, utils
        from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

        class _Fitter(SemiParametricPHFitter):
            def _choose_gradient_calculator(self, T, X, entries):
                # with entries lifelines calls CoxTimeVaryingFitter._get_gradients on the
                # .values of each stratum's pieces; this is that call, taking arrays too
                if entries is None:
                    return super()._choose_gradient_calculator(T, X, entries)
                return _ctv_gradients

            def _partition_by_strata_and_apply(self, X, T, E, weights, entries, function, *args):
                # lifelines groups X by its stratum index and selects T, E, weights and
                # entries with .loc on that non-unique index, on every Newton step. The
                # rows are sorted by stratum (``_preprocess_dataframe``), so each stratum
                # is one contiguous block: the same arrays, in the same order, by position
                # (numpy views: what ``.values`` of the pandas pieces returns).
                keys = X.index.to_numpy()
                if (function is not _ctv_gradients or X.index.nlevels != 1 or len(keys) == 0
                        or not X.index.is_monotonic_increasing):
                    yield from super()._partition_by_strata_and_apply(X, T, E, weights, entries,
                                                                      function, *args)
                    return
                arrays = [v.values for v in (X, T, E, weights, entries)]
                starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
                for a, b in zip(starts, np.r_[starts[1:], len(keys)]):
                    yield function(*(v[a:b] for v in arrays), *args)

            def newton_raphson_sorted(self, x, names, start_, stop, event, strata, start=None,
                                      overwrite=False):
                """``fit``'s Newton–Raphson on arrays already in lifelines' order.

                Returns (coefficients, log-likelihood, covariance = inverse information),
                on the original scale, columns in ``self.params_index`` order;
                ``start``: initial coefficients on the original scale (None: zero);
                ``overwrite``: ``x`` (an array) may be standardised in place.

                The rows must be sorted by (stratum, stop, event) as
                ``_preprocess_dataframe`` sorts them; the pandas objects it would build
                (covariates indexed by stratum, durations, events, unit weights,
                entries) are then built directly — its frame copies, sort and
                per-column pops cost seconds at a million rows (identical objects,
                tested).
                """
                return self._newton(*self.preprocess_sorted(x, names, start_, stop, event,
                                                            strata), start, overwrite)

            def preprocess_sorted(self, x, names, start_, stop, event, strata):
                """What ``_preprocess_dataframe`` returns for rows already sorted:
                (covariates, durations, events, weights, entries)."""
                self._setup(len(stop), strata is not None)
                index = (pd.RangeIndex(len(stop)) if strata is None
                         else pd.Index(strata, name="_stratum"))
                columns = pd.Index(list(names), name="covariate")
                x = pd.DataFrame(x, index=index, columns=columns)
                t = pd.Series(np.asarray(stop, float), index=index, name="_stop")
                e = pd.Series(event, index=index, name="_event")
                utils.check_nans_or_infs(e)
                e = e.astype(bool)
                w = pd.Series(np.ones(len(stop)), index=index, name="weights")
                entries = pd.Series(start_, index=index, name="_start")
                # lifelines' pre-fit checks but its low-variance warning (a pandas
                # variance of every column: seconds, and a hint we never act on)
                utils.check_for_numeric_dtypes_or_raise(x)
                utils.check_nans_or_infs(t)
                utils.check_nans_or_infs(x)
                utils.check_entry_times(t, entries)
                return x, t, e, w, entries

            def _setup(self, n, stratified):
                self.duration_col, self.event_col, self.entry_col = "_stop", "_event", "_start"
                self.robust, self.cluster_col, self.weights_col = False, None, None
                self.formula, self._batch_mode = None, None
                self._n_examples = n
                self.strata = "_stratum" if stratified else None  # as fit() stores it

            def _newton(self, x, t, e, w, entries, start, overwrite=False):
                values = x.to_numpy()  # fit()'s X.mean(0), X.std(0), in numpy
                mean = values.mean(0)
                # utils.normalize's (X - mean) / std: in place when allowed, else one copy
                if overwrite and values.flags.writeable:
                    scaled = values
                    scaled -= mean
                else:
                    scaled = values - mean
                del values
                std = _column_std(scaled)
                self._norm_mean = pd.Series(mean, index=x.columns)
                self._norm_std = pd.Series(std, index=x.columns)
                scaled /= std
                x_norm = pd.DataFrame(scaled, index=x.index, columns=x.columns)
                del x
                init = None if start is None else np.asarray(start, float) * std
                beta, loglik, hessian = self._newton_raphson_for_efron_model(
                    x_norm, t, e, w, entries, initial_point=init, show_progress=False,
                    **FIT_OPTIONS)
                self.params_index = list(x_norm.columns)
                cov = -linalg.inv(hessian) / np.outer(std, std)  # as _fit_model
                return beta / std, float(loglik), cov

        def _ctv_gradients(X, T, E, weights, entries, beta):
            return CoxTimeVaryingFitter._get_gradients(
                *(getattr(v, "values", v) for v in (X, E, entries, T, weights)), beta)

        _CLASS = _Fitter
    return _CLASS
