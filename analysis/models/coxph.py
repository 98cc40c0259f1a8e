"""Cox proportional hazards on (start, stop] rows: lifelines fits, we add the sandwich.

The coefficients, the model-based variance (inverse information) and the partial
log-likelihood come from lifelines ``CoxPHFitter`` with ``entry_col`` (delayed
entry: row i is at risk on (start_i, stop_i]) and ``strata`` — the same Efron
partial likelihood as R ``coxph(Surv(start, stop, event) ~ ... + strata(s))``
(lifelines evaluates it with ``CoxTimeVaryingFitter``'s risk sets
``start < t <= stop``). What lifelines does not give is a cluster-robust variance
that respects delayed entry: its ``cluster_col`` residuals assume every row is at
risk from time 0. :func:`cox_fit` therefore adds the per-row score residuals of
:mod:`analysis.models.cox_residuals` at lifelines' coefficients, and
:meth:`CoxFit.cov_robust` turns their cluster sums into the Lin–Wei sandwich with
lifelines' variance matrix as the bread.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.models.clustered import cluster_sandwich
from analysis.models.cox_residuals import efron_residuals

log = logging.getLogger(__name__)

#: lifelines Newton–Raphson options. ``precision`` bounds the last step (on
#: lifelines' standardised scale) far below the 1e-6 the tests hold coefficients
#: to; ``r_precision`` is R ``coxph``'s relative log-likelihood rule (1e-9);
#: ``step_size`` 1.0 is a plain Newton step, as R takes.
FIT_OPTIONS = {"precision": 1e-12, "r_precision": 1e-9, "step_size": 1.0, "max_steps": 50}


@dataclass
class CoxFit:
    """Result of :func:`cox_fit`.

    Attributes
    ----------
    params : coefficients (lifelines ``params_``).
    cov_naive : model-based covariance, the inverse information (lifelines ``variance_matrix_``).
    loglik, loglik_null : partial log-likelihood at ``params`` and at zero (lifelines).
    score_residuals : per-row score residuals (n, p) at ``params``; their sum is the score (≈ 0).
    schoenfeld : Schoenfeld residuals of the event rows (n_events, p).
    event_times : time of each event row (same order as ``schoenfeld``).
    n_events, converged : bookkeeping.
    lifelines : the fitted ``CoxPHFitter``.
    """

    params: np.ndarray
    cov_naive: np.ndarray
    loglik: float
    loglik_null: float
    score_residuals: np.ndarray
    schoenfeld: np.ndarray
    event_times: np.ndarray
    n_events: int
    converged: bool
    lifelines: object = None

    def cov_robust(self, clusters, *, small_sample: bool = False) -> np.ndarray:
        """Lin–Wei cluster-robust covariance ``V (Σ_g s_g s_gᵀ) V`` with V = ``cov_naive``.

        ``small_sample=True`` multiplies by G/(G−1); the default is the raw sandwich
        of R ``coxph(cluster=)`` and lifelines ``robust=True``.
        """
        return cluster_sandwich(self.cov_naive, self.score_residuals, np.asarray(clusters),
                                small_sample=small_sample)


def cox_fit(start, stop, event, x, strata=None, *, names: Sequence[str] | None = None
            ) -> CoxFit:
    """Fit an Efron Cox model with strata and delayed entry (lifelines) plus its residuals.

    Parameters
    ----------
    start, stop : (n,) risk interval (start, stop] of each row; start < stop.
    event : (n,) 1 if the event happens at ``stop``.
    x : (n, p) covariates (constant within a row's interval), array or DataFrame.
    strata : (n,) stratum labels, or None.
    names : column names (default: the DataFrame's, else x0..x{p-1}).

    Returns
    -------
    CoxFit
    """
    xa = np.asarray(x, float)
    if names is None:
        names = list(x.columns) if isinstance(x, pd.DataFrame) else [f"x{j}" for j in
                                                                      range(xa.shape[1])]
    names = list(names)
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    event = np.asarray(event).astype(int)
    frame = pd.DataFrame(xa, columns=names)
    frame["_start"], frame["_stop"], frame["_event"] = start, stop, event
    codes = None
    if strata is not None:
        codes = pd.factorize(pd.Series(np.asarray(strata)))[0]
        frame["_stratum"] = codes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cph = _fitter(frame, strata is not None)
    # only lifelines' own verdicts count ("failed to converge", or a last Newton step
    # still large: non-unique maximum); "this may harm convergence" hints do not
    converged = not any(("failed to converge" in str(w.message))
                        or ("norm(delta) is still high" in str(w.message)) for w in caught)
    if not converged:
        log.warning("Cox fit (lifelines) did not converge")
    params = cph.params_.loc[names].to_numpy(float)
    cov = cph.variance_matrix_.loc[names, names].to_numpy(float)
    res = efron_residuals(start, stop, event, xa, params, codes)
    return CoxFit(params=params, cov_naive=cov, loglik=float(cph.log_likelihood_),
                  loglik_null=float(cph._ll_null_), score_residuals=res.score,
                  schoenfeld=res.schoenfeld, event_times=res.event_times,
                  n_events=int(event.sum()), converged=converged, lifelines=cph)


def cox_coefficients(frame: pd.DataFrame, names: Sequence[str], *, stratified: bool = True,
                     start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Only the coefficients of an Efron Cox fit, warm-started: for jackknife refits.

    Parameters
    ----------
    frame : columns ``names`` plus ``_start``, ``_stop``, ``_event`` (and ``_stratum``).
    names : covariate columns.
    stratified : stratify by ``_stratum``.
    start : starting coefficients (original scale), e.g. the full-sample estimate;
        None starts at zero as ``fit`` does.

    Returns
    -------
    (coefficients in the order of ``names``, converged)
        lifelines' own preprocessing and Newton–Raphson (the steps of
        ``CoxPHFitter.fit``, same ``FIT_OPTIONS``) without what a refit does not
        need: baseline hazards, predictions, standard errors. Same optimum as
        :func:`cox_fit` (tested).
    """
    cols = list(names) + ["_start", "_stop", "_event"] + (["_stratum"] if stratified else [])
    fitter = _semiparametric_class()()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = fitter.coefficients(frame[cols], stratified, start)
    converged = not any(("failed to converge" in str(w.message))
                        or ("norm(delta) is still high" in str(w.message)) for w in caught)
    order = [list(fitter.params_index).index(n) for n in names]
    return params[order], converged


def _fitter(frame: pd.DataFrame, stratified: bool):
    return _semiparametric_class()().fit(
        frame, duration_col="_stop", event_col="_event", entry_col="_start",
        strata=["_stratum"] if stratified else None, show_progress=False,
        fit_options=dict(FIT_OPTIONS))


_CLASS = None


def _semiparametric_class():
    """lifelines' Breslow-baseline Cox fitter, minus a descriptive overhead.

    ``CoxPHFitter()`` with the default ``baseline_estimation_method="breslow"`` is a
    thin wrapper that fits ``SemiParametricPHFitter``; we call that class directly.
    Before fitting it stores per-stratum "central values" of every column (used only
    by its plotting helpers) through ``DataFrame.describe`` once per stratum — about
    half of the fit's time with 24 team strata and 33k episodes. The override
    computes the same values (the per-stratum median of each numeric column, cast
    to the column's dtype) with one ``groupby().median()``; estimation is untouched
    (coefficients, variance and log-likelihoods are bit-identical, tested).
    """
    global _CLASS
    if _CLASS is None:
        from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

        class _Fitter(SemiParametricPHFitter):
            def _compute_central_values_of_raw_training_data(self, df, strata=None,
                                                             name="baseline"):
                keys = [strata] if isinstance(strata, str) else list(strata or [])
                if not keys or not all(pd.api.types.is_numeric_dtype(t) for t in df.dtypes):
                    return super()._compute_central_values_of_raw_training_data(df, strata,
                                                                                name)
                return df.groupby(keys).median().astype(df.drop(columns=keys).dtypes)

            def _partition_by_strata(self, X, T, E, entries, weights):  # lifelines' order
                # lifelines groups X by its stratum index and selects T, E, weights and
                # entries with .loc on that non-unique index, on every Newton step. The
                # rows are sorted by stratum (``_preprocess_dataframe``), so each stratum
                # is one contiguous block: the same pieces, in the same order, by position.
                keys = X.index.to_numpy()
                if X.index.nlevels != 1 or len(keys) == 0 or not X.index.is_monotonic_increasing:
                    yield from super()._partition_by_strata(X, T, E, entries, weights)
                    return
                starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
                for a, b in zip(starts, np.r_[starts[1:], len(keys)]):
                    yield ((X.iloc[a:b], T.iloc[a:b], E.iloc[a:b], weights.iloc[a:b],
                            None if entries is None else entries.iloc[a:b]), keys[a])

            def coefficients(self, frame, stratified, start=None):
                """``fit``'s preprocessing and Newton-Raphson only (see cox_coefficients)."""
                from lifelines import utils

                self.duration_col, self.event_col, self.entry_col = "_stop", "_event", "_start"
                self.robust, self.cluster_col, self.weights_col = False, None, None
                self.formula, self._batch_mode = None, None
                self._n_examples = frame.shape[0]
                self.strata = "_stratum" if stratified else None  # as fit() stores it
                x, t, e, w, entries, _, _ = self._preprocess_dataframe(frame)
                self._norm_mean, self._norm_std = x.mean(0), x.std(0)
                x_norm = pd.DataFrame(utils.normalize(x.values, self._norm_mean.values,
                                                      self._norm_std.values),
                                      index=x.index, columns=x.columns)
                init = None if start is None else \
                    np.asarray(start, float) * self._norm_std.values
                beta, _, _ = self._newton_raphson_for_efron_model(
                    x_norm, t, e, w, entries, initial_point=init, show_progress=False,
                    **FIT_OPTIONS)
                self.params_index = list(x.columns)
                return beta / self._norm_std.values

        _CLASS = _Fitter
    return _CLASS
