"""Leave-one-cluster-out jackknife (CR3) variance of a model's estimates.

Every headline model reports errors clustered by team. The CRV1-type sandwiches
(CR1, Lin–Wei) are biased downward when a regressor's variation comes from a few
clusters — here, plan switches in a few teams — and their t(G−1) intervals
covered 88–94% instead of 95% over 50 simulated companies (docs/models.md). The
jackknife re-estimates the model once per team with that team's rows left out and
uses the spread of those estimates:

    V_CR3 = (G−1)/G · Σ_g (θ̂_(−g) − θ̂)(θ̂_(−g) − θ̂)ᵀ

centred at the full-sample estimate θ̂ (MacKinnon, Nielsen & Webb 2023, "CV3";
pyfixest's ``{"CRV3": ...}`` and R ``summclust`` centre there too; centring at the
mean of the θ̂_(−g) instead, as Stata's ``vce(jackknife)``, gives a slightly
smaller matrix). Intervals and p-values use t(G−1).

A refit is the model's own procedure applied to the remaining teams (the same
library call, the same dropping of uninformative groups). A term that varies
within its fixed effects in one team only is not identified without it: its
leave-one-out estimate does not exist, and neither does its CR3 variance — the
term is then reported non-estimable (:func:`identified_without`).

Only up to ``JACKKNIFE_MAX_CLUSTERS`` teams: with more, each model reports its
CRV1-type sandwich (Lin–Wei × G/(G−1) for Cox, pyfixest CRV1 for the panel
models, CR1 for the logit), still with t(G−1) (:func:`use_jackknife`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Within-group sum of squares left after removing a cluster, as a share of the
#: full one, below which a term counts as not identified without that cluster
#: (same tolerance as the identifiability check of :mod:`analysis.models.design`).
REL_TOL = 1e-8

#: Most clusters (teams) for which the reported errors are the CR3 jackknife; with
#: more, every model reports its CRV1-type sandwich (CR1 / Lin–Wei) with t(G−1).
#: Why: CR1 under-covers with few clusters — in docs/models.md, same seeds, it
#: covered 0.85–0.93 per outcome at 12 teams (CR3 0.965 overall) and 0.922 overall
#: at 24 (CR3 0.960) — and its bias vanishes as G grows (Cameron & Miller 2015; MacKinnon,
#: Nielsen & Webb 2023: CRV1 with t(G−1) is reliable with many, not too unequal,
#: clusters), while the jackknife costs G refits: at company scale (~1 200 teams)
#: hours for the Cox model alone. 50 is where the cluster-robust literature's
#: "many clusters" starts (Cameron & Miller: 20–50) and leaves a wide margin over
#: the 12–24 teams the coverage was measured at. Cost at the threshold, teams of
#: the sample's size: G refits of a model ∝ G rows, ≈ (50/24)² ≈ 4× the sample's
#: (docs/models.md, "Cost"; Cox ≈ 25 s instead of 6 s, estimated). Not simulated here above
#: 24 teams: the CR1 side rests on the literature, not on our coverage runs.
JACKKNIFE_MAX_CLUSTERS = 50


@contextmanager
def single_threaded_blas():
    """BLAS/LAPACK on one thread while models are fitted (threadpoolctl, via scikit-learn).

    The refits solve many small systems (e.g. a 4 000 × 40 logit design); a
    multi-threaded OpenBLAS gains nothing there and, on a busy or oversubscribed
    machine (pytest -n 2 on two cores), spin-waits: measured 15-24 s instead of
    1.2-1.4 s for the 24 renewal refits. One thread also makes the last digits
    independent of the machine's core count.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def use_jackknife(n_clusters: int, max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> bool:
    """Whether the reported errors are the CR3 jackknife (G ≤ ``max_clusters``) or CR1."""
    return n_clusters <= max_clusters


def cr3_note(n_clusters: int) -> str:
    """The variance named in an effect row's ``note``."""
    return f"CR3 jackknife by team (G={n_clusters}), t({n_clusters - 1})"


def cr1_note(n_clusters: int, name: str = "CR1", max_clusters: int = JACKKNIFE_MAX_CLUSTERS
             ) -> str:
    """The ``note`` of an effect whose errors are the CRV1-type sandwich ``name`` (G > max)."""
    return (f"{name} by team (G={n_clusters} > {max_clusters}: no jackknife), "
            f"t({n_clusters - 1})")


class RefitFailed(Exception):
    """A leave-one-cluster-out refit could not be fitted (the library's own error inside)."""

    def __init__(self, cluster, cause: BaseException):
        super().__init__(f"without team {cluster}: {type(cause).__name__}: {cause}")
        self.cluster, self.cause = cluster, cause


@dataclass
class Jackknife:
    """Result of :func:`jackknife`.

    Attributes
    ----------
    full : full-sample estimates θ̂ (index: names).
    estimates : leave-one-out estimates, one row per left-out cluster (NaN where a
        name was not estimable in that refit); empty when the library computed the
        CR3 itself (pyfixest's CRV3 does not return them).
    vcov : CR3 covariance of the names estimated in every refit.
    n_clusters : G, the number of clusters (refits).
    dropped : {name: cluster} for names missing from some refit (not identified
        without that cluster): they have no CR3 variance.
    seconds : time spent refitting.
    """

    full: pd.Series
    estimates: pd.DataFrame
    vcov: pd.DataFrame
    n_clusters: int
    dropped: dict = field(default_factory=dict)
    seconds: float = 0.0

    def std_error(self, name: str) -> float:
        """CR3 standard error of ``name`` (NaN if it has none)."""
        if name not in self.vcov.index:
            return float("nan")
        return float(np.sqrt(self.vcov.loc[name, name]))


def cr3_covariance(full: pd.Series, estimates: pd.DataFrame) -> pd.DataFrame:
    """(G−1)/G · Σ_g (θ̂_(−g) − θ̂)(θ̂_(−g) − θ̂)ᵀ over the columns of ``estimates``."""
    g = len(estimates)
    dev = estimates.to_numpy(float) - full.reindex(estimates.columns).to_numpy(float)
    cov = (g - 1) / g * dev.T @ dev
    return pd.DataFrame(cov, index=estimates.columns, columns=estimates.columns)


def jackknife(full: pd.Series, clusters: np.ndarray,
              refit: Callable[[np.ndarray, object], pd.Series], *,
              errors: tuple[type[BaseException], ...] = ()) -> Jackknife:
    """Refit without each cluster in turn and return the CR3 covariance.

    Parameters
    ----------
    full : full-sample estimates (the names whose variance is wanted).
    clusters : cluster label of every row of the model's data.
    refit : ``refit(keep, cluster)`` fits the model on the rows where the boolean
        mask ``keep`` is true (``cluster`` left out) and returns its estimates by
        name; a name it cannot estimate in that sample may be missing.
    errors : the library exceptions that mean "this refit cannot be fitted"; they
        are re-raised as :class:`RefitFailed` naming the cluster. Anything else
        propagates unchanged.

    Returns
    -------
    Jackknife
    """
    t0 = time.perf_counter()
    clusters = np.asarray(clusters)
    labels = sorted(pd.unique(clusters), key=str)
    rows = []
    with single_threaded_blas():
        for label in labels:
            try:
                est = refit(clusters != label, label)
            except errors as exc:
                raise RefitFailed(label, exc) from exc
            rows.append(pd.Series(est, dtype=float).reindex(full.index))
    estimates = pd.DataFrame(rows, index=pd.Index(labels, name="left_out"))
    complete = estimates.notna().all()
    dropped = {name: estimates.index[estimates[name].isna()][0]
               for name in full.index if not complete[name]}
    vcov = cr3_covariance(full, estimates.loc[:, complete])
    return Jackknife(full=full, estimates=estimates, vcov=vcov, n_clusters=len(labels),
                     dropped=dropped, seconds=time.perf_counter() - t0)


def identified_without(x: pd.DataFrame, groups: np.ndarray, clusters: np.ndarray,
                       terms: Sequence[str] | None = None) -> dict:
    """For each cluster, the terms that still vary within ``groups`` once it is left out.

    ``groups`` is the finest fixed effect (or stratum) nested in the clusters — rep
    for the rep × quarter panel, team for the team-stratified Cox model and the
    team-FE logit. A term with no within-group variation outside one cluster is
    not identified without it. Cheap (one grouped sum of squares), so it runs
    before the refits instead of an identifiability check per refit.

    Returns
    -------
    dict
        {cluster label: list of the ``terms`` identified without it}.
    """
    terms = list(x.columns if terms is None else terms)
    vals = x[terms].astype(float)
    within = vals - vals.groupby(np.asarray(groups)).transform("mean")
    ss = (within ** 2).groupby(np.asarray(clusters)).sum()
    total = ss.sum()
    out = {}
    for label in ss.index:
        rest = total - ss.loc[label]
        out[label] = [t for t in terms if rest[t] > REL_TOL * total[t] and total[t] > 0]
    return out


def missing_note(term: str, cluster) -> str:
    """Reason for a term that one leave-one-out refit cannot estimate."""
    return (f"not estimable: {term} is not identified without team {cluster}, so its "
            "leave-one-team-out (CR3) variance does not exist")


def failed_note(exc: RefitFailed) -> str:
    """Reason for every term when a leave-one-out refit fails."""
    text = str(exc)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"not estimable: the CR3 jackknife refit failed ({text})"
