"""The fast path: one compiled (jax) objective per model structure, exact gradients.

Same inputs and results as :mod:`fitaas.inference` (pyhf computes the statistics); only
the minimisations get their -2lnL and gradient from code compiled once per structure.
Needs the ``jax`` extra.
"""

from __future__ import annotations

from fitaas.fast.optimizer import compiled_objective_optimizer
from fitaas.fast.structures import Structure, StructureCache

__all__ = ["Structure", "StructureCache", "compiled_objective_optimizer"]
