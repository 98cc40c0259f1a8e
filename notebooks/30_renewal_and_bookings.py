# ---
# jupyter:
#   kpisat:
#     independent: true
# ---

# %% [markdown]
# # Renewal and bookings
#
# **Renewal.** Contracts that reached their end date by the quarter's last day without
# being cancelled (cancellations are churn, not renewal decisions). A logistic
# regression with team and end-quarter fixed effects, errors clustered by team, gives
# log odds ratios; average marginal effects restate them in percentage points. A
# variant adds customer controls (segment, contract value, tenure): if the effects
# move a lot, plans differ in the customers they renew, not only in how.
#
# **Bookings.** Does a plan that pays less for revenue cost revenue? Rep × quarter
# log(1 + won amount), rep and quarter fixed effects.
#
# Effects are per **10 percentage points** of weight moved from revenue to the named KPI.

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

from analysis import config, findings, fit_cache, plots, report_text, wild_compare
from analysis.i18n import Catalogue
from analysis.prepare import prepare

# %matplotlib inline

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
prepared = prepare(source, quarter, as_of)
renewals = prepared.derived["renewal_table"]
panel = prepared.derived["rep_quarter_panel"]
catalogue = Catalogue(lang)
term_labels = {t: catalogue.label("terms", t) for t in config.TERMS}
display(Markdown(f"Quarter **{prepared.quarter}**: {len(renewals)} renewal decisions "
                 f"({int(renewals['renewed'].sum())} renewed), {len(panel)} rep-quarters."))

# %% [markdown]
# ## Renewal: logit with team and quarter fixed effects

# %%
renewal = fit_cache.cached(prepared, "renewal", "analysis.models:fit_renewal", renewals)
renewal_controls = fit_cache.cached(prepared, "renewal_controls", "analysis.models:fit_renewal",
                                    renewals, controls=True)
pd.concat([renewal.summary, renewal_controls.summary], ignore_index=True)

# %%
renewal.effects

# %% [markdown]
# ### With customer controls
#
# Compare with the table above: the estimates should move little if plans do not
# differ in the customers whose contracts come up.

# %%
renewal_controls.effects

# %% [markdown]
# ## Bookings

# %%
bookings = fit_cache.cached(prepared, "bookings", "analysis.models:fit_linear", panel,
                           "bookings")
bookings.summary

# %%
bookings.effects

# %%
headline = {"renewal (log odds ratio)": renewal.effects[renewal.effects["model"] == "logit_fe"],
            "bookings (log bookings)": bookings.effects}
with plots.theme(lang):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained", sharey=True)
    for ax, (title, rows) in zip(axes, headline.items()):
        plots.plot_effects(rows.assign(label=rows["term"].map(term_labels)), ax=ax, title=title)
plt.show()

# %% [markdown]
# ## Wild cluster bootstrap beside the analytic p-values
#
# With 10 to 40 teams, cluster-robust p-values can come out too small when a
# weight's variation comes from a few teams. The restricted wild cluster bootstrap
# (pyfixest `wildboottest`: WCR-11, Webb weights, seeded) tests the same "no effect"
# another way. Where the two disagree about the 5% line, read that effect with care.
# Only the linear models have this bootstrap.

# %%
wild = wild_compare.wild_comparison({"bookings": bookings})
if wild.empty:
    display(Markdown("_No side-by-side p-values: they are computed for 10 to 40 teams._"))
else:
    display(wild.assign(disagree=(wild["p_value"] < 0.05) != (wild["p_value_wild"] < 0.05)))

# %%
effects = pd.concat([renewal.effects, renewal_controls.effects, bookings.effects],
                    ignore_index=True)
sentences = report_text.effect_sentences(findings.normalise_effects(effects), catalogue)
display(Markdown("\n".join(f"- {s}" for s in sentences) or "_No effect to report._"))

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "effects", effects)
findings.write_fragment(run_path, "fit_summaries",
                        pd.concat([renewal.summary, renewal_controls.summary, bookings.summary],
                                  ignore_index=True))
display(Markdown(f"Wrote {len(effects)} effects to `{run_path}`."))
