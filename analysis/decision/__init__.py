"""Decision support: what plan changes did, for whom, and what they are worth.

Modules: ``tradeoff`` (frontier and recommendation; built from ``tradeoff_inputs``,
``tradeoff_models``, ``tradeoff_bootstrap`` and ``recommendation``), ``whatif``,
``gaming``, ``claims``; plan-change event studies in ``event_study`` (with
``plan_switches``, ``event_study_estimators``, ``event_study_bootstrap`` and
``event_study_pretrend``); ``heterogeneity`` and ``multiple_testing``. On data too
thin for an analysis every function returns non-estimable results with the reason.

The functions below are imported on first use (PEP 562), so a notebook pays only for
the modules it uses (the event studies, trade-offs and heterogeneity import pyfixest,
statsmodels and lifelines: seconds of a kernel's start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.lazy import lazy_attributes

if TYPE_CHECKING:
    from analysis.decision.claims import claims_ledger, headline_effects  # noqa: F401
    from analysis.decision.event_study import event_studies, plot_event_study  # noqa: F401
    from analysis.decision.gaming import gaming_summary, survey_gaming  # noqa: F401
    from analysis.decision.heterogeneity import scope_weights  # noqa: F401
    from analysis.decision.multiple_testing import adjust_pvalues  # noqa: F401
    from analysis.decision.tradeoff import (Tradeoff, plot_frontier,  # noqa: F401
                                            tradeoff_analysis, true_frontier)
    from analysis.decision.whatif import WhatIfResult, parse_plan  # noqa: F401

#: Public name -> module defining it. ``heterogeneity`` and ``plan_switches`` are the
#: modules (importing a submodule binds its name here); their functions share the names.
_LAZY = {
    "claims_ledger": "claims", "headline_effects": "claims",
    "event_studies": "event_study", "plot_event_study": "event_study",
    "gaming_summary": "gaming", "survey_gaming": "gaming",
    "scope_weights": "heterogeneity",
    "adjust_pvalues": "multiple_testing",
    "Tradeoff": "tradeoff", "plot_frontier": "tradeoff", "tradeoff_analysis": "tradeoff",
    "true_frontier": "tradeoff",
    "WhatIfResult": "whatif", "parse_plan": "whatif",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
