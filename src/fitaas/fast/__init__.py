"""The fast path: one compiled (jax) objective per model structure, exact gradients.

Same inputs as :mod:`fitaas.inference`, and pyhf computes the statistics; the
minimisations get their -2lnL and gradient from code compiled once per structure, start
from the earlier fits of the same test and run over parameters scaled by their constraint
widths. Results agree with plain pyhf within its fits' tolerance (nearer a tight fit than
pyhf's defaults). Needs the ``jax`` extra.
"""

from __future__ import annotations

from fitaas.fast.optimizer import compiled_objective_optimizer
from fitaas.fast.scales import parameter_scales
from fitaas.fast.structure_cache import StructureCache
from fitaas.fast.structures import Structure

__all__ = ["Structure", "StructureCache", "compiled_objective_optimizer", "parameter_scales"]
