"""Reading only some columns, or a table in parts, gives the same values as the whole."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from analysis import metrics
from analysis.decision import event_study as es
from analysis.decision import gaming, heterogeneity
from analysis.decision import tradeoff_models as tm
from analysis.columns import read_batches, read_columns
from analysis.prepare import LazyFrames, _load, prepare

#: (kind, table, columns) that the notebooks read narrowly.
READS = [("derived", "survival_episodes", tm.EPISODE_COLUMNS),
         ("derived", "survival_episodes", metrics.EPISODE_COLUMNS),
         ("derived", "renewal_table", tm.RENEWAL_COLUMNS),
         ("derived", "renewal_table", heterogeneity.RENEWAL_COLUMNS),
         *(("tables", name, columns) for name, columns in gaming.TABLE_COLUMNS.items())]


@pytest.fixture(scope="module")
def cached():
    """The sample quarter as a kernel sees it: every table read from the cache on use."""
    p = prepare(None, "2025Q4", "2025-12-31")
    loaded = _load(p.location)
    assert isinstance(loaded.derived, LazyFrames)
    return loaded


@pytest.fixture(scope="module")
def in_memory(cached):
    """The same quarter with its tables in memory (a quarter just built)."""
    return dataclasses.replace(
        cached, tables={n: cached.tables[n] for n in cached.tables},
        derived={n: cached.derived[n] for n in cached.derived})


@pytest.mark.parametrize("kind, name, columns", READS)
def test_read_columns_are_the_whole_tables_columns(cached, in_memory, kind, name, columns):
    whole = pd.read_parquet(cached.location / kind / f"{name}.parquet")[list(columns)]
    for p in (cached, in_memory):
        pd.testing.assert_frame_equal(read_columns(p, kind, name, columns), whole,
                                      check_exact=True)


@pytest.mark.parametrize("kind, name, columns", READS)
def test_parts_concatenate_to_the_columns(cached, in_memory, kind, name, columns):
    whole = read_columns(cached, kind, name, columns)
    for p in (cached, in_memory):
        parts = list(read_batches(p, kind, name, columns, rows=997))
        assert len(parts) == -(-len(whole) // 997)
        pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole,
                                      check_exact=True)


def test_churn_cells_from_parts_equal_the_cells_of_the_whole(cached):
    episodes = cached.derived["survival_episodes"]
    whole = tm.churn_cells(episodes, 1.0)
    parts = tm.churn_cells(read_batches(cached, "derived", "survival_episodes",
                                        tm.EPISODE_COLUMNS, rows=1500), 1.0)
    assert len(whole) > 0
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)


def test_quarterly_metrics_need_only_the_episode_columns(cached):
    panel = cached.derived["rep_quarter_panel"]
    counts = cached.derived["survey_counts"]
    for scope in metrics.SCOPES:
        whole = metrics.quarterly_metrics(cached.tables, panel, cached.quarter, scope,
                                          episodes=cached.derived["survival_episodes"],
                                          survey_counts=counts)
        narrow = metrics.quarterly_metrics(
            cached.tables, panel, cached.quarter, scope, survey_counts=counts,
            episodes=read_columns(cached, "derived", "survival_episodes",
                                  metrics.EPISODE_COLUMNS))
        pd.testing.assert_frame_equal(narrow, whole, check_exact=True)


def test_event_study_keeps_the_fit_numbers_not_the_bootstrap_maps(cached):
    results = es.event_studies(cached.derived["rep_quarter_panel"], cached.tables,
                               outcomes=("bookings",))
    kept = results["bookings"].extras["did2s"]
    assert {"coef", "vcov", "times"} <= set(kept)
    assert not any(callable(v) for v in kept.values())


def test_narrow_tables_give_the_same_subgroups_and_gaming(cached):
    whole = heterogeneity.heterogeneity(cached.derived, cached.tables, cached.as_of)
    pd.testing.assert_frame_equal(heterogeneity.subgroup_effects(cached), whole,
                                  check_exact=True)
    surveys = {n: cached.derived[n] for n in ("survey_counts", "survey_respondents")}
    pd.testing.assert_frame_equal(
        gaming.survey_gaming(gaming.gaming_tables(cached), cached.quarter, surveys=surveys),
        gaming.survey_gaming(cached.tables, cached.quarter, surveys=surveys), check_exact=True)


def test_renewal_columns_hold_the_renewal_fixed_effects():
    from analysis.models.renewal import FE

    assert set(FE) <= set(heterogeneity.RENEWAL_COLUMNS) and set(FE) <= set(tm.RENEWAL_COLUMNS)
