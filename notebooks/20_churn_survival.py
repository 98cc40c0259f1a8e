# ---
# jupyter:
#   kpisat:
#     independent: true
# ---

# %% [markdown]
# # Churn: who stays, under which plan
#
# Customers are followed from acquisition (tenure in days) in episodes that split
# whenever the owning team's plan, the owner, or the calendar quarter changes.
# First the raw picture — Kaplan–Meier survival by plan, with the number still at
# risk — then the model that separates plans from teams and time: a Cox model
# stratified by team, with calendar-quarter terms and the plan weights in force as
# time-varying covariates (Efron ties, errors clustered by team).
#
# An effect is a log hazard ratio per **10 percentage points** of weight moved from
# revenue to the named KPI; below zero means customers churn more slowly.

# %% tags=["parameters"]
source: str = ""  # folder, .duckdb file or postgresql:// URL; empty: the sample company
quarter: str = ""  # reporting quarter, e.g. 2025Q4; empty: latest complete
as_of: str = ""  # day the data was extracted, YYYY-MM-DD; empty: from the source, else today
run_dir: str = ""  # folder the run's findings go to; empty: reports/interactive
lang: str = "en"  # report language: en or zh

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from analysis import config, findings, fit_cache, plots, report_text
from analysis.columns import read_columns
from analysis.i18n import Catalogue
from analysis.prepare import prepare

# %matplotlib inline

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
prepared = prepare(source, quarter, as_of)
# only the columns the models read, ids as categoricals: a quarter of the memory at scale
episodes = read_columns(prepared, "derived", "survival_episodes",
                        config.CHURN_EPISODE_COLUMNS, categories=True)
catalogue = Catalogue(lang)
term_labels = {t: catalogue.label("terms", t) for t in config.TERMS}
plan_names = prepared.tables["kpi_plans"].set_index("plan_id")["name"]
display(Markdown(f"Quarter **{prepared.quarter}**: {len(episodes)} episodes, "
                 f"{episodes['customer_id'].nunique()} customers, "
                 f"{int(episodes['event'].sum())} churn events."))

# %% [markdown]
# ## Kaplan–Meier survival by plan
#
# Delayed entry: a customer enters a plan's curve at the tenure it had when the plan
# took over. Plans differ in which teams used them and when, so these curves are
# descriptive, not effects.

# %%
km = fit_cache.cached(prepared, "km_by_plan", "analysis.models:km_by_plan", episodes)
km_curves = (km.assign(plan_name=km["plan_id"].map(plan_names).fillna(km["plan_id"]))
             .rename(columns={"day": "timeline", "conf_low": "ci_lower", "conf_high": "ci_upper"}))
with plots.theme(lang):
    ax = plots.plot_survival(km_curves, title="Customers still active, by plan",
                             xlabel="tenure (days)", ylabel="still customers (%)")
plt.show()

# %% [markdown]
# Number at risk, by plan, at yearly tenure marks:

# %%
yearly = km_curves[np.isclose(km_curves["timeline"] % 365, 0) | (km_curves["timeline"] == 0)]
yearly.pivot(index="plan_name", columns="timeline", values="at_risk")

# %% [markdown]
# Log-rank test of equal survival across plans:

# %%
fit_cache.cached(prepared, "logrank_by_plan", "analysis.models:logrank_by_plan", episodes)

# %% [markdown]
# ## Cox model: effects of plan weights on churn

# %%
churn = fit_cache.cached(prepared, "churn", "analysis.models:fit_churn", episodes)
churn.summary

# %%
churn.effects

# %%
with plots.theme(lang):
    plots.plot_effects(churn.effects.assign(label=churn.effects["term"].map(term_labels)),
                       title="churn", xlabel="log hazard ratio per 10 points of weight")
plt.show()

# %%
sentences = report_text.effect_sentences(findings.normalise_effects(churn.effects), catalogue)
display(Markdown("\n".join(f"- {s}" for s in sentences) or "_No effect to report._"))

# %% [markdown]
# ## Diagnostics: proportional hazards
#
# Scaled Schoenfeld residuals against tenure rank. A small p-value says the weight's
# effect drifts with tenure: read its hazard ratio as an average over tenure.

# %%
churn.extras.get("ph_test", "the model did not fit: no diagnostics")

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "effects", churn.effects)
findings.write_fragment(run_path, "fit_summaries", churn.summary)
findings.write_artifact(run_path, "km_by_plan", km_curves)
display(Markdown(f"Wrote {len(churn.effects)} effects and the survival curves to `{run_path}`."))
