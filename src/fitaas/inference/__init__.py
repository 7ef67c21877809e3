"""The pure inference core: options, results, and typed wrappers over ``pyhf.infer``."""

from fitaas.inference.backend import pyhf_backend
from fitaas.inference.core import fit, hypotest, upper_limit
from fitaas.inference.models import build_model
from fitaas.inference.options import KINDS, InferenceOptions, Kind
from fitaas.inference.results import (
    FitResult,
    HypotestResult,
    ToySummary,
    UpperLimitResult,
    UpperLimitScanPoint,
)

__all__ = [
    "KINDS",
    "FitResult",
    "HypotestResult",
    "InferenceOptions",
    "Kind",
    "ToySummary",
    "UpperLimitResult",
    "UpperLimitScanPoint",
    "build_model",
    "fit",
    "hypotest",
    "pyhf_backend",
    "upper_limit",
]
