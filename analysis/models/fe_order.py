"""pyfixest fits whose fixed effects are swept in the formula's order, whatever the hash seed.

pyfixest 0.60 writes a formula's fixed effects into formulaic's model formula from a
``set`` of their names (``pyfixest.estimation.formula.utils._encode_fixed_effects``),
so the order of the fixed-effect columns — the order in which the alternating
projections of the demeaning sweep them — follows the string hash seed
(``PYTHONHASHSEED``): with a random seed (a plain ``python``, ``pytest`` or Jupyter
process) the last digits of every estimate, standard error and covariance move from
one process to the next. Inside :func:`formula_fe_order` they come in the order the
formula names them. Every formula of ours names them in the order the set gives under
``PYTHONHASHSEED=0`` (``rep_id + quarter``, ``stratum + quarter``; checked in
tests/test_hash_seed.py), the seed the published results were produced with, so those
stay bit-identical.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

_PREFIX, _SUFFIX = "__fixed_effect__(", " - 1"


def _terms(names: list[str]) -> list[str]:
    return [f"{_PREFIX}{fe.replace('^', '_')})" for fe in names]


def _in_order(encode):
    """``encode`` (pyfixest's encoder) with its terms put back in the formula's order."""

    def encode_in_order(fixed_effects: str, data):
        encoded = encode(fixed_effects, data)  # also adds the columns of interacted effects
        names = list(dict.fromkeys(re.split(r"\s*\+\s*", fixed_effects)))
        if not encoded.endswith(_SUFFIX) or \
                sorted(encoded[:-len(_SUFFIX)].split(" + ")) != sorted(_terms(names)):
            raise RuntimeError(f"pyfixest encoded the fixed effects {fixed_effects!r} as "
                               f"{encoded!r}, not as analysis.models.fe_order expects")
        return " + ".join(_terms(names)) + _SUFFIX

    return encode_in_order


@contextmanager
def formula_fe_order() -> Iterator[None]:
    """While active, pyfixest (``feols``, ``fepois``, ``create_model_matrix``) orders the
    fixed-effect columns as the formula names them (nests; not thread-safe)."""
    from pyfixest.estimation.formula import model_matrix

    original = model_matrix._encode_fixed_effects
    model_matrix._encode_fixed_effects = _in_order(original)
    try:
        yield
    finally:
        model_matrix._encode_fixed_effects = original
