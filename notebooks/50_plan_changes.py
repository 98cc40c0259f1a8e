# ---
# jupyter:
#   kpisat:
#     independent: true
# ---

# %% [markdown]
# # What did plan changes do?
#
# **Event studies.** When a team switched to a plan that puts at least 10 percentage
# points more weight on satisfaction and complaints (`w_satisfaction + w_complaints`),
# what happened to its customers and its bookings in the quarters after, compared with
# teams that had not switched yet? Event time 0 is the quarter the new plan took
# effect (a mid-quarter switch counts from that quarter, so quarter 0 is only partly
# under the new plan). The estimator is Gardner's two-stage difference-in-differences
# (imputation): rep and quarter effects are learnt from rep-quarters not yet under a
# switched plan, so teams that switched earlier never serve as controls — a plain
# two-way fixed-effects event study would, and is biased when teams switch at
# different times. Intervals come from the wild cluster bootstrap by team; with more
# than 50 teams from the cluster sandwich by team with t(G−1) (each row's `note` says
# which).
#
# **Pre-trends.** Before the switch, switching teams should not already drift away
# from the others. The leads (quarters before the switch) are tested jointly; a
# rejected test means the after-switch numbers are not credible.
#
# **For whom?** The effect of the satisfaction weight on renewal for first-term vs
# existing customers and by segment, and on renewal, CSAT and NPS for plans that
# score satisfaction per team vs per rep. Many subgroups mean many tests: p-values
# are adjusted (Holm) over the whole table.

# %% tags=["parameters"]
source: str = ""  # folder, .duckdb file or postgresql:// URL; empty: the sample company
quarter: str = ""  # reporting quarter, e.g. 2025Q4; empty: latest complete
as_of: str = ""  # day the data was extracted, YYYY-MM-DD; empty: from the source, else today
run_dir: str = ""  # folder the run's findings go to; empty: reports/interactive
lang: str = "en"  # report language: en or zh

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from analysis import config, findings, fit_cache, plots
from analysis.decision import event_study, heterogeneity
from analysis.prepare import prepare

# %matplotlib inline

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
prepared = prepare(source, quarter, as_of)
panel = prepared.derived["rep_quarter_panel"]
display(Markdown(f"Quarter **{prepared.quarter}** (data as of {prepared.as_of}): "
                 f"{len(panel)} rep-quarters, {panel['team_id'].nunique()} teams."))

# %% [markdown]
# ## The switches
#
# Each team's first switch that raised the satisfaction-related weight by 0.10 or
# more, grouped by the quarter it took effect. `dose_share` is the share of that
# quarter already under the new plan.

# %%
results = event_study.event_studies(panel, prepared.tables, threshold=0.10)
switches = next(iter(results.values())).extras["switches"]
event_study.cohorts(switches)

# %% [markdown]
# ## Pre-trend tests
#
# `p_value` comes from the restricted wild cluster bootstrap (valid with few teams);
# `p_value_crv1` from the usual cluster-robust F test, shown for comparison — it
# rejects far too often with few teams. Above 50 teams the two are the same: the
# F test is reliable there and no bootstrap is run.

# %%
pretrends = event_study.pretrend_tests(results)
pretrends

# %% [markdown]
# ## Dynamic effects
#
# Grey: quarters before the switch (should hover around zero). Blue: quarters after.
# Bars are 95% intervals.

# %%
with plots.theme(lang):
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4), layout="constrained")
    for ax, (outcome, result) in zip(axes.flat, results.items()):
        event_study.plot_event_study(result, ax=ax, title=outcome)
    axes.flat[-1].set_visible(False)
plt.show()

# %%
effects = event_study.effects_of(results)
effects

# %% [markdown]
# ## For whom does the satisfaction weight work?
#
# Each row is the effect of 10 more points of `w_satisfaction` (taken from revenue) in
# one subgroup, or the difference between two subgroups. Read `p_adjusted`, not
# `p_value`: it accounts for the number of subgroups tried.

# %%
subgroups = fit_cache.cached(prepared, "heterogeneity", heterogeneity.subgroup_effects, prepared)
subgroups[["outcome", "term", "model", "estimate", "conf_low", "conf_high", "p_value",
           "p_adjusted"]]

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "effects", pd.concat([effects, subgroups], ignore_index=True))
findings.write_fragment(run_path, "event_study_pretrends", pretrends)
display(Markdown(f"Wrote {len(effects) + len(subgroups)} effects to `{run_path}`."))
