"""Decision support: what plan changes did, for whom, and what they are worth.

Modules: ``tradeoff`` (frontier and recommendation; built from ``tradeoff_inputs``,
``tradeoff_models``, ``tradeoff_bootstrap`` and ``recommendation``), ``whatif``,
``gaming``, ``claims``; plan-change event studies in ``event_study`` (with
``plan_switches``, ``event_study_estimators``, ``event_study_bootstrap`` and
``event_study_pretrend``); ``heterogeneity`` and ``multiple_testing``. On data too
thin for an analysis every function returns non-estimable results with the reason.
"""

from analysis.decision.claims import claims_ledger, headline_effects  # noqa: F401
from analysis.decision.event_study import (event_studies, plan_switches,  # noqa: F401
                                           plot_event_study)
from analysis.decision.gaming import gaming_summary, survey_gaming  # noqa: F401
# (``analysis.decision.heterogeneity`` is the module; its function shares the name)
from analysis.decision.heterogeneity import scope_weights  # noqa: F401
from analysis.decision.multiple_testing import adjust_pvalues  # noqa: F401
from analysis.decision.tradeoff import (Tradeoff, plot_frontier,  # noqa: F401
                                        tradeoff_analysis, true_frontier)
from analysis.decision.whatif import WhatIfResult, parse_plan  # noqa: F401
