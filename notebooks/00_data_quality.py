# ---
# jupyter:
#   kpisat:
#     independent: true
# ---

# %% [markdown]
# # Data quality
#
# What the run read, what it used, and what it set aside. Every table of the input is
# checked against the data contract (`shared/spec/data-contract.md`); a row that
# breaks it is **quarantined** with one reason, never silently fixed. The counts here
# are for the rows the analysed quarter can see: the world as it looked on the
# quarter's last day.
#
# This notebook also writes the quarter's headline metrics (NPS, satisfaction,
# complaint and churn rates) and the plans in force for the leadership report.

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

from analysis import config, findings, metrics, plots
from analysis.columns import read_columns
from analysis.prepare import prepare
from analysis.quarters import quarter_start

# %matplotlib inline

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
prepared = prepare(source, quarter, as_of)
quality = prepared.validated.data_quality()
display(Markdown(f"**{prepared.source_description}** — quarter **{prepared.quarter}**, "
                 f"data as of **{prepared.as_of}**, input fingerprint "
                 f"`{prepared.fingerprint[:12]}`"))

# %% [markdown]
# ## Rows read, used and quarantined, by table

# %%
counts = pd.DataFrame({"read": quality["rows_read"], "used": quality["rows_used"],
                       "quarantined": quality["rows_quarantined"]}).rename_axis("table")
counts["% quarantined"] = (100 * counts["quarantined"] / counts["read"].where(counts["read"] > 0)).round(2)
counts

# %% [markdown]
# ## Why rows were quarantined
#
# One line per table and reason. Fix these at the source: a quarantined row is left
# out of every analysis.

# %%
quarantine = prepared.validated.quarantine
reasons = (quarantine.groupby(["table", "reason"], sort=True).size().rename("rows").reset_index()
           if len(quarantine) else pd.DataFrame(columns=["table", "reason", "rows"]))
reasons

# %%
quarantine.head(50)

# %% [markdown]
# ## Coverage by quarter
#
# How much evidence each quarter carries in the rep × quarter panel. A quarter with few
# survey responses or renewals decided gives wide intervals for those outcomes.

# %%
panel = prepared.derived["rep_quarter_panel"]
coverage_columns = ["won_deals", "surveys_sent", "csat_responses", "nps_responses",
                    "complaints", "renewals_due", "churned_customers"]
coverage = panel.groupby("quarter", sort=True)[coverage_columns].sum()
coverage.insert(0, "reps", panel.groupby("quarter", sort=True)["rep_id"].nunique())
coverage

# %%
with plots.theme(lang):
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    coverage[["won_deals", "csat_responses", "complaints", "renewals_due"]].plot(ax=ax, marker="o")
    ax.set_title("Evidence per quarter")
    ax.set_xlabel("quarter")
    ax.set_ylabel("count")
    ax.grid(axis="y")
plt.show()

# %% [markdown]
# ## Headline metrics of the quarter
#
# Company-wide NPS, share of satisfied customers, response, complaint, churn and renewal
# rates and bookings, each with its interval, for the analysed quarter (the findings
# keep every quarter up to it, for trends). Metrics by rep or team are never shown for
# cells smaller than `config.SMALL_CELL`.

# %%
episodes = read_columns(prepared, "derived", "survival_episodes", metrics.EPISODE_COLUMNS)
quarter_metrics = metrics.quarterly_metrics(prepared.tables, panel, prepared.quarter,
                                            episodes=episodes,
                                            survey_counts=prepared.derived["survey_counts"])
del episodes
quarter_metrics[quarter_metrics["quarter"] == prepared.quarter]

# %% [markdown]
# ## Plans in force
#
# The incentive plans assigned to any team up to the quarter's last day.

# %%
kpi_plans = prepared.tables["kpi_plans"]
assigned = kpi_plans["plan_id"].isin(prepared.tables["plan_assignments"]["plan_id"])
plans_in_force = (kpi_plans[assigned]
                  .rename(columns={"name": "plan_name"})
                  .sort_values("plan_id")
                  .reset_index(drop=True))
plans_in_force

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "data_quality", quality)
findings.write_fragment(run_path, "data_period", {
    "start": quarter_start(coverage.index.min()).isoformat(),
    "end": prepared.quarter_end.isoformat()})
findings.write_fragment(run_path, "metrics", quarter_metrics)
findings.write_artifact(run_path, "plans", plans_in_force)
findings.write_artifact(run_path, "coverage", coverage.reset_index())
display(Markdown(f"Wrote data quality, {len(quarter_metrics)} metrics and "
                 f"{len(plans_in_force)} plans to `{run_path}`."))
