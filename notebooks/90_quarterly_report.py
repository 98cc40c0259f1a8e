# %% [markdown]
# # Quarterly report
#
# Renders the leadership report, `index.html`, from the run's `findings.json`,
# `manifest.json` and chart artifacts written by the notebooks before this one. The
# report shows no code and states only numbers found in `findings.json`.

# %% tags=["parameters"]
source: str = ""  # folder, .duckdb file or postgresql:// URL; empty: the sample company
quarter: str = ""  # reporting quarter, e.g. 2025Q4; empty: latest complete
as_of: str = ""  # day the data was extracted, YYYY-MM-DD; empty: from the source, else today
run_dir: str = ""  # folder the run's findings go to; empty: reports/interactive
lang: str = "en"  # report language: en or zh

# %%
from pathlib import Path

from IPython.display import Markdown, display

from analysis import config, findings
from analysis.report import render_report

run_path = Path(run_dir) if run_dir else config.REPORTS_DIR / "interactive"
index = render_report(run_path, lang=lang)
summary = findings.read_findings(run_path)
display(Markdown(f"Wrote `{index}` for {summary['quarter']} (as of {summary['as_of']}): "
                 f"{len(summary['effects'])} effects, {len(summary['metrics'])} metrics."))
