"""fitaas: Fitting as a Service for HistFactory likelihoods.

pyhf does the statistics; fitaas runs it for every signal point of a published
likelihood, on whatever compute you have, and keeps every result.

Example:
    >>> import fitaas  # doctest: +SKIP
    >>> result = fitaas.scan("BkgOnly.json", "patchset.json", store="store.sqlite")
    >>> for point in result:
    ...     print(point.patch, point.cls_obs)
"""

from fitaas._version import __version__
from fitaas.errors import FitaasError, InputError
from fitaas.inference import (
    FitResult,
    HypotestResult,
    InferenceOptions,
    UpperLimitResult,
)
from fitaas.pallets import Pallet, Point, load_pallet
from fitaas.results import PointResult, ScanResult, read_results
from fitaas.scan import ScanProgress, scan
from fitaas.store import ResultStore

__all__ = [
    "FitResult",
    "FitaasError",
    "HypotestResult",
    "InferenceOptions",
    "InputError",
    "Pallet",
    "Point",
    "PointResult",
    "ResultStore",
    "ScanProgress",
    "ScanResult",
    "UpperLimitResult",
    "__version__",
    "load_pallet",
    "read_results",
    "scan",
]
