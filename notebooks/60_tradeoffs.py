# ---
# jupyter:
#   kpisat:
#     reads: [10_satisfaction_and_complaints, 20_churn_survival, 30_renewal_and_bookings]
# ---

# %% [markdown]
# # Trade-offs: how much weight on satisfaction?
#
# Moving plan weight from revenue to satisfaction costs some bookings and keeps more
# customers. This notebook puts both on one scale — **expected 3-year customer
# value per rep**: bookings over the horizon plus the contract value the current book
# keeps paying while it stays — and asks which satisfaction weights are best, with a
# team cluster bootstrap for the uncertainty (above 50 teams: draws from the models'
# cluster-robust covariance instead; the recommendation's note says which). Each
# outcome's model is fitted with a
# curvature term in the satisfaction weight; the curve is kept only where a
# cluster-robust Wald test finds it (p < 0.05). Then: are survey numbers being
# managed, and which popular rules of thumb hold here?
#
# Everything is a model projection over the weights observed in the data, not a
# tested plan.

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

from analysis import config, decision, findings, fit_cache, plots
from analysis.decision.gaming import gaming_tables
from analysis.prepare import prepare

# %matplotlib inline

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
prepared = prepare(source, quarter, as_of)
result = fit_cache.cached(prepared, "tradeoff", decision.tradeoff_analysis, prepared)
display(Markdown(f"Quarter **{prepared.quarter}**. {result.summary_markdown()}"))

# %% [markdown]
# ## Linear or curved?
#
# Curvature term (x − x̄)² in the satisfaction weight (x per 10 points), its
# cluster-robust Wald p-value, and the form kept for each outcome.

# %%
result.selection

# %% [markdown]
# ## The objective across satisfaction weights
#
# V(w) = 4·H·B₀·exp(Δη_bookings(w)) + N₀·A₀·(1 − exp(−h(w)·H)) / h(w), with
# h(w) = h₀·exp(Δη_churn(w)) and H = 3 years; the band is the 95% interval of those
# draws.

# %%
with plots.theme(lang):
    ax = plots.plot_frontier(result.frontier, recommended=result.recommendation["range"],
                             title="Expected 3-year customer value per rep",
                             xlabel="satisfaction weight (%)", ylabel="customer value")
plt.show()

# %%
with plots.theme(lang):
    decision.plot_frontier(result.frontier, current=result.current_plans,
                           recommended=result.recommendation["range"])
plt.show()

# %%
result.frontier.iloc[::5].round(3)

# %%
recommendation = result.recommendation
display(Markdown(result.recommendation_markdown()))

# %% [markdown]
# ## Survey gaming diagnostics
#
# Per rep over the last four quarters: response rate against mean CSAT, share of
# perfect scores, and whether respondents differ from all the rep's customers. Reps
# with fewer answers than the small-cell threshold are not scored or named.

# %%
gaming = decision.survey_gaming(gaming_tables(prepared), prepared.quarter,
                                surveys=prepared.derived)
gaming_summary = decision.gaming_summary(gaming)
with plots.theme(lang):
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    scored = gaming[gaming["eligible"]]
    ax.scatter(100 * scored["response_rate"], scored["csat_mean"], s=12, alpha=0.6)
    ax.scatter(100 * scored.loc[scored["flagged"], "response_rate"],
               scored.loc[scored["flagged"], "csat_mean"], s=40, color="#D55E00", label="flagged")
    ax.set_xlabel("survey response rate (%)")
    ax.set_ylabel("mean CSAT")
    ax.legend()
plt.show()
pd.Series({k: v for k, v in gaming_summary.items() if k != "flagged"})

# %% [markdown]
# ## Rules of thumb, checked here

# %%
effects = decision.headline_effects(run_path, prepared)
claims = decision.claims_ledger(effects, recommendation=recommendation, tradeoff=result)
pd.DataFrame(claims)

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "recommendation", recommendation)
findings.write_fragment(run_path, "claims", claims)
findings.write_fragment(run_path, "survey_gaming", gaming_summary)
findings.write_artifact(run_path, "frontier", result.frontier)
display(Markdown(f"Wrote the recommendation, {len(claims)} claims, the gaming summary and the "
                 f"frontier to `{run_path}`."))
