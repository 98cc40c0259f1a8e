"""How often does a generated company pass the sample's recovery criterion?

``python -m benchmarks.recovery_seeds --seeds 1-20 --scale 1 --out benchmarks/out/recovery``

The acceptance test of issue 3 (``tests/test_recovery.py``) asks that on the sample
company at least 90% of the 30 true effects lie inside their 95% intervals. That is
one draw of a random event: this script generates companies with other seeds at the
sample's scale, runs the real pipeline (``prepare`` then ``fit_effects``) and prints,
per seed, how many of the 30 true effects are covered, and the share of seeds that
pass. Each seed's effects are cached as CSV under ``OUT`` (reruns skip fitted seeds).
Not part of the test suite: a company at scale 1 takes ~20-40 s to fit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

HEADLINE = ("cox_stratified_tv", "logit_fe", "poisson_fe", "ols_fe")
MIN_SHARE = 0.90


def seed_effects(seed: int, scale: float, out: Path) -> pd.DataFrame:
    """Headline effects of the company generated with ``seed``, with the truth attached."""
    target = out / f"seed{seed}-scale{scale:g}.csv"
    if target.exists():
        return pd.read_csv(target)
    from analysis import config
    from analysis.models import fit_effects
    from analysis.prepare import prepare
    from analysis.sample import generate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "company"
        generate(data, seed=seed, scale=scale)
        cache, config.CACHE_DIR = config.CACHE_DIR, Path(tmp) / "cache"
        try:
            prepared = prepare(str(data), "2025Q4", None)
        finally:
            config.CACHE_DIR = cache
        truth = json.loads((data / "ground_truth.json").read_text())
    effects = fit_effects(prepared.derived).effects
    effects = effects[effects["model"].isin(HEADLINE)].copy()
    true = {(e["outcome"], e["term"]): e["estimate"] for e in truth["effects"]}
    effects["truth"] = [true[(o, t)] for o, t in zip(effects["outcome"], effects["term"])]
    effects["seed"] = seed
    out.mkdir(parents=True, exist_ok=True)
    effects.to_csv(target, index=False)
    return effects


def covered_table(effects: pd.DataFrame) -> pd.DataFrame:
    """Per seed: effects covered out of those reported, and whether the criterion holds."""
    inside = (effects["conf_low"] <= effects["truth"]) & (effects["truth"] <= effects["conf_high"])
    table = effects.assign(covered=inside).groupby("seed").agg(
        effects=("covered", "size"), covered=("covered", "sum"))
    table["passes"] = table["covered"] >= MIN_SHARE * table["effects"]
    return table


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-20", help="seed range, e.g. 1-20")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/recovery"))
    args = parser.parse_args(argv)
    effects = pd.concat([seed_effects(s, args.scale, args.out) for s in _seeds(args.seeds)],
                        ignore_index=True)
    table = covered_table(effects)
    print(table.to_string())
    print(f"{int(table['passes'].sum())} of {len(table)} seeds pass "
          f"(>= {MIN_SHARE:.0%} of true effects inside their 95% intervals); "
          f"all intervals: {float(((effects['conf_low'] <= effects['truth']) & (effects['truth'] <= effects['conf_high'])).mean()):.3f}")


if __name__ == "__main__":
    main()
