"""fitaas: Fitting as a Service for HistFactory likelihoods.

pyhf does the statistics; fitaas runs it for every signal point of a published
likelihood, on whatever compute you have, and keeps every result.

Example:
    >>> import fitaas  # doctest: +SKIP
    >>> result = fitaas.scan("BkgOnly.json", "patchset.json", store="store.sqlite")
    >>> for point in result:
    ...     print(point.patch, point.cls_obs)

The public names are imported on first use, so that ``import fitaas`` (and the command
line's ``--help``) does not pay for importing pyhf.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fitaas._version import __version__
from fitaas.errors import FitaasError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from fitaas.client import Client, Job
    from fitaas.fit_jobs import likelihood_scan, ranking, upper_limit
    from fitaas.gathering import ScanProgress
    from fitaas.inference import FitResult, HypotestResult, InferenceOptions, UpperLimitResult
    from fitaas.inference.likelihood_scan import LikelihoodScan
    from fitaas.inference.ranking import RankingResult
    from fitaas.pallets import Pallet, Point, load_pallet
    from fitaas.results import PointResult, ScanResult, read_results
    from fitaas.scanning import scan
    from fitaas.store import ResultStore, open_store
    from fitaas.streaming import StreamSummary, stream_scan
    from fitaas.sweeps import sweep

_LAZY = {
    "FitResult": "fitaas.inference",
    "HypotestResult": "fitaas.inference",
    "InferenceOptions": "fitaas.inference",
    "UpperLimitResult": "fitaas.inference",
    "Pallet": "fitaas.pallets",
    "Point": "fitaas.pallets",
    "load_pallet": "fitaas.pallets",
    "PointResult": "fitaas.results",
    "ScanResult": "fitaas.results",
    "read_results": "fitaas.results",
    "ScanProgress": "fitaas.scanning",
    "scan": "fitaas.scanning",
    "ResultStore": "fitaas.store",
    "open_store": "fitaas.store",
    "sweep": "fitaas.sweeps",
    "StreamSummary": "fitaas.streaming",
    "stream_scan": "fitaas.streaming",
    "ranking": "fitaas.fit_jobs",
    "likelihood_scan": "fitaas.fit_jobs",
    "upper_limit": "fitaas.fit_jobs",
    "RankingResult": "fitaas.inference.ranking",
    "LikelihoodScan": "fitaas.inference.likelihood_scan",
    "Client": "fitaas.client",
    "Job": "fitaas.client",
}

__all__ = [
    "Client",
    "FitResult",
    "FitaasError",
    "HypotestResult",
    "InferenceOptions",
    "InputError",
    "Job",
    "LikelihoodScan",
    "Pallet",
    "Point",
    "PointResult",
    "RankingResult",
    "ResultStore",
    "ScanProgress",
    "ScanResult",
    "StreamSummary",
    "UpperLimitResult",
    "__version__",
    "likelihood_scan",
    "load_pallet",
    "open_store",
    "ranking",
    "read_results",
    "scan",
    "stream_scan",
    "sweep",
    "upper_limit",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fitaas' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
