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
    from fitaas.engines.compute import Compute
    from fitaas.inference import FitResult, HypotestResult, InferenceOptions, UpperLimitResult
    from fitaas.inference.likelihood_scan import LikelihoodScan
    from fitaas.inference.ranking import RankingResult
    from fitaas.inputs.pallets import Pallet, Point, load_pallet
    from fitaas.jobs.fit_jobs import likelihood_scan, ranking, upper_limit
    from fitaas.jobs.gathering import ScanProgress
    from fitaas.jobs.scanning import scan
    from fitaas.jobs.streaming import StreamSummary, stream_scan
    from fitaas.jobs.sweeps import sweep
    from fitaas.output.progress import FitBar, ScanBar
    from fitaas.output.results import PointResult, ScanResult, read_results
    from fitaas.store import ResultStore, open_store

_LAZY = {
    "Compute": "fitaas.engines.compute",
    "FitResult": "fitaas.inference",
    "HypotestResult": "fitaas.inference",
    "InferenceOptions": "fitaas.inference",
    "UpperLimitResult": "fitaas.inference",
    "Pallet": "fitaas.inputs.pallets",
    "Point": "fitaas.inputs.pallets",
    "load_pallet": "fitaas.inputs.pallets",
    "PointResult": "fitaas.output.results",
    "ScanResult": "fitaas.output.results",
    "read_results": "fitaas.output.results",
    "ScanBar": "fitaas.output.progress",
    "FitBar": "fitaas.output.progress",
    "ScanProgress": "fitaas.jobs.scanning",
    "scan": "fitaas.jobs.scanning",
    "ResultStore": "fitaas.store",
    "open_store": "fitaas.store",
    "sweep": "fitaas.jobs.sweeps",
    "StreamSummary": "fitaas.jobs.streaming",
    "stream_scan": "fitaas.jobs.streaming",
    "ranking": "fitaas.jobs.fit_jobs",
    "likelihood_scan": "fitaas.jobs.fit_jobs",
    "upper_limit": "fitaas.jobs.fit_jobs",
    "RankingResult": "fitaas.inference.ranking",
    "LikelihoodScan": "fitaas.inference.likelihood_scan",
    "Client": "fitaas.client",
    "Job": "fitaas.client",
}

__all__ = [
    "Client",
    "Compute",
    "FitBar",
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
    "ScanBar",
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
