"""Decision support: what plan changes did, for whom, and what they are worth."""

# trade-offs, what-if, survey gaming and the claims ledger
from analysis.decision.claims import claims_ledger, headline_effects  # noqa: E402,F401
from analysis.decision.gaming import gaming_summary, survey_gaming  # noqa: E402,F401
from analysis.decision.tradeoff import (Tradeoff, plot_frontier,  # noqa: E402,F401
                                        tradeoff_analysis, true_frontier)
from analysis.decision.whatif import WhatIfResult, parse_plan  # noqa: E402,F401
# the modules ``whatif`` and ``tradeoff`` stay reachable as analysis.decision.whatif etc.
# plan-change event studies, subgroup effects and their multiple-testing adjustment
from analysis.decision.event_study import (event_studies, plan_switches,  # noqa: E402,F401
                                           plot_event_study)
# (``analysis.decision.heterogeneity`` is the module; its function shares the name)
from analysis.decision.heterogeneity import scope_weights  # noqa: E402,F401
from analysis.decision.multiple_testing import adjust_pvalues  # noqa: E402,F401
