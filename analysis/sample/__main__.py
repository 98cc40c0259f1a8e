"""``python -m analysis.sample --out DIR [--seed N] [--scale X] [--null-effects]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .generate import generate


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate, print a one-line JSON summary; return the exit code."""
    ap = argparse.ArgumentParser(prog="python -m analysis.sample",
                                 description="Generate the synthetic sample company.")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--null-effects", action="store_true",
                    help="every true plan effect zero (for false-positive checks)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(args.out, seed=args.seed, scale=args.scale,
                       null_effects=args.null_effects)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
