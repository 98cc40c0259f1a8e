"""Do the 95% intervals of the real pipeline cover the truth 95% of the time?

Generates ``N_SEEDS`` small sample companies (``analysis.sample.generate`` at
``SCALE[kind]``),
runs each through the real pipeline (``prepare``: load, validate, as-of 2025Q4, derived
tables; then ``fit_effects``) and checks, per outcome, the share of the 5 terms ×
``N_SEEDS`` intervals that contain the true effect (``N_SEEDS`` × 5 = 100 intervals per
outcome). A company whose true effects are all zero (``null_effects=True``) must
yield at most 10% effects significant at 5%.

Why two sizes: at 12 teams the renewal logit's CR3 jackknife is conservative (100 of
100 intervals covered, SE / SD ~1.3; the jackknife variance is biased upward for a
non-linear estimator, Efron & Stein 1981), which would breach the 0.99 upper bound
without saying anything about the sample company; at its 24 teams it covered 0.97
(seeds 1-20, benchmarks/recovery_seeds.py). Under-coverage is what a small company
risks, and the null check at 12 teams is where it would show.

One company's fit is one test (``test_fit_company``), so pytest-xdist spreads them over
its workers; each stores its effects under the session's shared temporary folder (file
locks, as in conftest.py). The assertions over all companies come last and fit any
company not fitted yet (so they also run on their own: ``-k coverage``). Run with
``-s`` (or ``-rP``) to see the coverage tables.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import _Lock, _shared_root

from analysis import config
from analysis.config import OUTCOMES, TERMS

#: Scale of the simulated companies. Coverage: the sample company's own size (24
#: teams, ~4,900 customers), the company the recovery test and the analysts look at.
#: Null effects: 12 teams (>= MIN_CLUSTERS, ~2,400 customers), where too-narrow
#: cluster-robust errors would show most (fewer teams, more false positives).
SCALE = {"truth": 1.0, "null": 0.5}
N_SEEDS = 20
SEEDS = tuple(range(9001, 9001 + N_SEEDS))
KINDS = ("truth", "null")
HEADLINE = ("cox_stratified_tv", "logit_fe", "poisson_fe", "ols_fe")
#: Per outcome, the share of intervals that contain the truth (nominal 95%; with 100
#: intervals the binomial standard deviation is ~2.2 points).
COVERAGE_RANGE = (0.88, 0.99)
#: Under null effects, the share of effects significant at 5%, over all outcomes.
MAX_FALSE_POSITIVE = 0.10

pytestmark = pytest.mark.slow

def _fit_company(folder: Path, seed: int, kind: str) -> pd.DataFrame:
    """Generate, prepare and fit one company; headline effects with the truth attached."""
    from analysis.models import fit_effects
    from analysis.prepare import prepare
    from analysis.sample import generate

    t0 = time.perf_counter()
    data = folder / f"{kind}-{seed}"
    generate(data, seed=seed, scale=SCALE[kind], null_effects=(kind == "null"))
    cache_dir, config.CACHE_DIR = config.CACHE_DIR, folder / "cache"
    try:
        prepared = prepare(str(data), "2025Q4", None)
    finally:
        config.CACHE_DIR = cache_dir
    effects = fit_effects(prepared.derived).effects
    effects = effects[effects["model"].isin(HEADLINE)].copy()
    truth = json.loads((data / "ground_truth.json").read_text())
    true = {(e["outcome"], e["term"]): e["estimate"] for e in truth["effects"]}
    effects["truth"] = [true[(o, t)] for o, t in zip(effects["outcome"], effects["term"])]
    effects["seed"], effects["kind"] = seed, kind
    effects["seconds"] = time.perf_counter() - t0
    return effects.reset_index(drop=True)


def company_effects(root: Path, seed: int, kind: str) -> pd.DataFrame:
    """The company's effects, fitted once per session (whichever worker comes first)."""
    folder = root / "coverage_sim"
    folder.mkdir(exist_ok=True)
    target = folder / f"{kind}-{seed}.csv"
    with _Lock(folder / f"{kind}-{seed}.lock"):
        if not target.exists():
            _fit_company(folder, seed, kind).to_csv(target, index=False)
    return pd.read_csv(target)


def all_effects(root: Path, kind: str) -> pd.DataFrame:
    return pd.concat([company_effects(root, s, kind) for s in SEEDS], ignore_index=True)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_fit_company(tmp_path_factory, kind, seed):
    effects = company_effects(_shared_root(tmp_path_factory), seed, kind)
    assert len(effects) == len(OUTCOMES) * len(TERMS)
    assert effects["estimable"].all(), effects.loc[~effects["estimable"], ["outcome", "term", "note"]]


def coverage_table(effects: pd.DataFrame) -> pd.DataFrame:
    """Per outcome: coverage of the 95% intervals, mean error and its z, mean SE vs SD."""
    e = effects.assign(
        covered=(effects["conf_low"] <= effects["truth"]) & (effects["truth"] <= effects["conf_high"]),
        error=effects["estimate"] - effects["truth"],
        significant=effects["p_value"] < 0.05)
    e["z"] = e["error"] / e["std_error"]
    by_term = e.groupby(["outcome", "term"], sort=False).agg(
        mean_error=("error", "mean"), sd_estimate=("estimate", "std"),
        mean_se=("std_error", "mean"))
    by_term["se_ratio"] = by_term["mean_se"] / by_term["sd_estimate"]
    out = e.groupby("outcome", sort=False).agg(
        intervals=("covered", "size"), coverage=("covered", "mean"),
        significant=("significant", "mean"), sd_z=("z", "std"))
    out["se_over_sd"] = by_term.groupby(level=0, sort=False)["se_ratio"].mean()
    return out.loc[[o for o in OUTCOMES if o in out.index]]


def test_intervals_cover_the_truth_per_outcome(tmp_path_factory):
    effects = all_effects(_shared_root(tmp_path_factory), "truth")
    table = coverage_table(effects)
    seconds = effects.groupby("seed")["seconds"].first()
    print(f"\nCoverage of 95% intervals, {N_SEEDS} companies at scale {SCALE['truth']} "
          f"({seconds.mean():.1f} s per company):\n{table.round(3).to_string()}")
    low, high = COVERAGE_RANGE
    bad = table[(table["coverage"] < low) | (table["coverage"] > high)]
    assert bad.empty, f"coverage outside [{low}, {high}]:\n{table.round(3).to_string()}"


def test_null_company_rarely_finds_effects(tmp_path_factory):
    effects = all_effects(_shared_root(tmp_path_factory), "null")
    assert (effects["truth"] == 0).all()
    table = coverage_table(effects)
    share = float((effects["p_value"] < 0.05).mean())
    print(f"\nNull companies ({N_SEEDS} at scale {SCALE['null']}): {share:.1%} of "
          f"{len(effects)} effects significant at 5%\n{table.round(3).to_string()}")
    assert share <= MAX_FALSE_POSITIVE, table.round(3).to_string()
