"""pyfixest fits give the same bytes whatever the string hash seed (PYTHONHASHSEED).

pyfixest orders the fixed effects through a set of their names, so without
:func:`analysis.models.fe_order.formula_fe_order` the demeaning's sweep order, and the
last digits of the fits, follow the hash seed. Each seed needs its own interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import PROJECT_ROOT

#: Small fits through our pyfixest call sites on a seeded unbalanced panel; prints the
#: sha256 of their coefficients and covariances.
SCRIPT = r"""
import hashlib, warnings
import numpy as np, pandas as pd
from analysis.decision.tradeoff_models import PoissonRefits, _pyfixest
from analysis.models.clustered import WildTest
from analysis.models.panel import _Refits, _fml

warnings.simplefilter("ignore")
rng = np.random.default_rng(3)
n = 600
rep = rng.integers(0, 60, n)
df = pd.DataFrame({"rep_id": rep, "team_id": rep // 6, "quarter": rng.integers(0, 8, n),
                   "stratum": rng.integers(0, 25, n), "x1": rng.normal(size=n),
                   "x2": rng.uniform(size=n), "csat_responses": rng.integers(1, 9, n)})
df["csat_mean"] = 0.3 * df["x1"] + rep % 7 * 0.1 + df["quarter"] * 0.05 + rng.normal(size=n)
df["events"] = rng.poisson(np.exp(0.2 * df["x1"] + df["stratum"] % 5 * 0.2))
df["log_days"] = np.log(rng.uniform(50, 90, n))
h = hashlib.sha256()
for outcome in ("csat", "churn"):
    fit = _pyfixest(outcome, df, ["x1", "x2"])
    h.update(np.asarray(fit._beta_hat, float).tobytes() + np.asarray(fit._vcov).tobytes())
refits = _Refits(_fml(["x1", "x2"]), df.assign(y=df["csat_mean"]), weights="csat_responses")
h.update(refits.coef(np.flatnonzero(df["team_id"] != 3)).to_numpy().tobytes())
poisson = PoissonRefits("churn", df)
h.update(poisson.fit(np.arange(0, n, 2), {}, ["x1", "x2"]).to_numpy().tobytes())
wild = WildTest(df, "csat_mean", ["x1", "x2"], ["rep_id", "quarter"], "team_id", reps=99)
h.update(np.asarray(wild.fit()._vcov).tobytes())
print(h.hexdigest())
"""


def _run(code: str, seed: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{PROJECT_ROOT / 'tests'}",
           "PYTHONHASHSEED": str(seed)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outputs(code: str, seeds) -> dict[int, str]:
    procs = {s: _run(code, s) for s in seeds}
    out = {}
    for s, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        out[s] = stdout.strip()
    return out


def test_fits_identical_across_hash_seeds():
    out = _outputs(SCRIPT, (0, 1, 2))
    assert len(set(out.values())) == 1, out


#: Under PYTHONHASHSEED=0 (the seed of the published runs) pyfixest's own set order of
#: each of our formulas' fixed effects is the order the formula names them, so pinning
#: the formula's order left the seed-0 numbers as they were.
SEED0_ORDER = r"""
import re
from analysis.decision.tradeoff_models import FIXED_EFFECTS
from analysis.models.panel import _fml
formulas = {_fml(["x"]).split("|")[1].strip(), "rep_id + quarter",  # panel, heterogeneity, wild
            *(" + ".join(fe) for fe in FIXED_EFFECTS.values())}
for fml in sorted(formulas):
    named = re.split(r"\s*\+\s*", fml)
    print(fml, list(set(named)) == named)
"""


def test_formulas_name_fixed_effects_in_the_seed0_order():
    lines = _outputs(SEED0_ORDER, (0,))[0].splitlines()
    assert lines and all(line.endswith("True") for line in lines), lines
