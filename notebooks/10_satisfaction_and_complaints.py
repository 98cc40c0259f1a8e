# ---
# jupyter:
#   kpisat:
#     independent: true
# ---

# %% [markdown]
# # Satisfaction and complaints
#
# Does moving plan weight from revenue to another KPI change what customers say and
# how often they complain? Three models on the rep × quarter panel, each with rep and
# quarter fixed effects (a rep's own character and the year's weather are not plan
# effects) and errors clustered by team:
#
# | outcome | model | scale |
# |---|---|---|
# | complaints | Poisson, log customer-quarters owned as offset | log rate ratio |
# | CSAT | linear, weighted by responses | CSAT points (1–5 scale) |
# | NPS | linear, weighted by responses | NPS points |
#
# An effect is the change when **10 percentage points** of plan weight move from
# revenue to the named KPI. With fewer than 10 teams, intervals come from the wild
# cluster bootstrap or the effect is reported as not estimable.

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
panel = prepared.derived["rep_quarter_panel"]
catalogue = Catalogue(lang)
term_labels = {t: catalogue.label("terms", t) for t in config.TERMS}
display(Markdown(f"Quarter **{prepared.quarter}** (data as of {prepared.as_of}): "
                 f"{len(panel)} rep-quarters, {panel['rep_id'].nunique()} reps, "
                 f"{panel['team_id'].nunique()} teams."))

# %% [markdown]
# ## Fit the models

# %%
fits = {
    "complaints": fit_cache.cached(prepared, "complaints", "analysis.models:fit_complaints",
                                   panel),
    "csat": fit_cache.cached(prepared, "csat", "analysis.models:fit_linear", panel, "csat"),
    "nps": fit_cache.cached(prepared, "nps", "analysis.models:fit_linear", panel, "nps"),
}
effects = pd.concat([fit.effects for fit in fits.values()], ignore_index=True)
summaries = pd.concat([fit.summary for fit in fits.values()], ignore_index=True)
summaries

# %% [markdown]
# ## Effects with 95% intervals
#
# A filled dot is an effect whose interval excludes zero; an open one is not
# distinguishable from no effect.

# %%
effects

# %%
with plots.theme(lang):
    fig, axes = plt.subplots(1, len(fits), figsize=(13, 3.2), layout="constrained", sharey=True)
    for ax, (outcome, fit) in zip(axes, fits.items()):
        plots.plot_effects(fit.effects.assign(label=fit.effects["term"].map(term_labels)),
                           ax=ax, title=outcome, xlabel=fit.effects["scale"].iloc[0])
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
wild = wild_compare.wild_comparison(fits)
if wild.empty:
    display(Markdown("_No side-by-side p-values: they are computed for 10 to 40 teams._"))
else:
    display(wild.assign(disagree=(wild["p_value"] < 0.05) != (wild["p_value_wild"] < 0.05)))

# %% [markdown]
# ## In plain words
#
# Each sentence says no more than its interval supports.

# %%
sentences = report_text.effect_sentences(findings.normalise_effects(effects), catalogue)
display(Markdown("\n".join(f"- {s}" for s in sentences) or "_No effect to report._"))

# %% [markdown]
# ## Hand-off to the report

# %%
findings.write_fragment(run_path, "effects", effects)
findings.write_fragment(run_path, "fit_summaries", summaries)
display(Markdown(f"Wrote {len(effects)} effects to `{run_path}`."))
