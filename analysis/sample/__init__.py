"""Seeded generator of the synthetic sample company whose true effects are known exactly.

``generate(out_dir, seed=7, scale=1.0)`` writes every contract table as CSV plus
``run.json`` and ``ground_truth.json``; ``python -m analysis.sample --out DIR`` does the
same from the shell. See ``docs/sample-company.md`` for the generating process.
"""

from __future__ import annotations

from .generate import generate

__all__ = ["generate"]
