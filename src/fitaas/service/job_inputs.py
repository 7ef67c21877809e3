"""What a job scans: one pallet, a sweep of named pallets, their combination, or theory
models streamed over a background-only workspace.

A job row keeps its workspace and patchset digests (a sweep's or combination's first
pallet's, for listing) and, beyond one pallet, an ``inputs`` JSON read here:
``{"pallets": [{"name", "workspace", "patchset"}, ...], "combine": {"join", "match"} |
null}`` or ``{"models": digest, "labels": [...]}``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from fitaas.errors import InputError
from fitaas.inference import InferenceOptions
from fitaas.inputs.pallets import Pallet, Point
from fitaas.inputs.theory_models import models_from_lines
from fitaas.service.documents import load_document, model_lines

__all__ = ["JobInputs", "NamedPallet", "PalletCache", "check_job_options", "job_models"]

NamedPallet = tuple[str, Pallet]


def check_job_options(
    options: InferenceOptions,
    pallet: Pallet,
    patches: list[str] | None,
    task: str,
) -> None:
    """Options a job's inputs cannot take, refused at submission (a job that would fail
    later): a measurement the workspace lacks, parameter names (fixed, initial values,
    bounds) its first point's model lacks, values outside their bounds.

    Raises:
        InputError: The first such option, named.
    """
    from fitaas.jobs.gathering import check_scan_options

    points = pallet.select(patches)[:1] if patches else pallet.points[:1]
    try:  # (the measurement, the parameters' names and values)
        check_scan_options(pallet, points, options, (task,))
    except InputError as exc:
        if exc.option != "measurement":
            raise
        raise InputError(f"option measurement: {exc}") from None


@dataclass(frozen=True)
class JobInputs:
    """A job's inputs beyond its workspace and patchset digests.

    Attributes:
        pallets: A sweep's or combination's pallets: ``{"name", "workspace",
            "patchset"}`` (digests; ``patchset`` may be ``None``).
        combine: ``{"join", "match"}`` for a combination (``None``: a sweep).
        models: The digest of a theory scan's models document.
        labels: Names of the models' values.
    """

    pallets: tuple[dict[str, Any], ...] = ()
    combine: dict[str, str] | None = None
    models: str | None = None
    labels: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> Literal["scan", "sweep", "combination", "models"]:
        """What the job scans."""
        if self.models is not None:
            return "models"
        if not self.pallets:
            return "scan"
        return "combination" if self.combine is not None else "sweep"

    @property
    def names(self) -> list[str]:
        """A sweep's or combination's pallet names, in order (none otherwise)."""
        return [p["name"] for p in self.pallets]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> JobInputs:
        """From a job row's ``inputs`` column."""
        if not data:
            return cls()
        return cls(
            pallets=tuple(data.get("pallets") or ()),
            combine=data.get("combine"),
            models=data.get("models"),
            labels=tuple(data.get("labels") or ()),
        )

    def to_json(self) -> dict[str, Any] | None:
        """For the ``inputs`` column (``None`` for a scan of one pallet)."""
        if self.kind == "scan":
            return None
        if self.kind == "models":
            return {"models": self.models, "labels": list(self.labels)}
        return {"pallets": list(self.pallets), "combine": self.combine}


def _pallet(engine: sa.Engine, workspace: str, patchset: str | None, source: str) -> Pallet:
    """A pallet of stored documents (validated at upload; its digest checked at submit)."""
    return Pallet.from_specs(
        load_document(engine, workspace),
        load_document(engine, patchset) if patchset else None,
        verify=False,
        source=source,
    )


def job_pallets(engine: sa.Engine, job: Any) -> list[NamedPallet]:
    """What a job row scans, named: its one pallet (named ``""``), a sweep's pallets, the
    combination of a combination's pallets, or a theory scan's workspace (its models are
    read by :func:`job_models`)."""
    inputs = JobInputs.from_json(job.inputs)
    if inputs.kind == "scan":
        return [("", _pallet(engine, job.workspace_digest, job.patchset_digest, "workspace"))]
    if inputs.kind == "models":
        base = _pallet(engine, job.workspace_digest, None, "workspace")
        return [("", dataclasses.replace(base, labels=inputs.labels))]
    named = [
        (p["name"], _pallet(engine, p["workspace"], p.get("patchset"), p["name"]))
        for p in inputs.pallets
    ]
    if inputs.kind == "sweep":
        return named
    from fitaas.jobs.combined_scans import combine_pallets

    combine = inputs.combine or {}
    combined = combine_pallets(named, join=combine["join"], match=combine["match"])
    return [(" + ".join(name for name, _ in named), combined.pallet)]


def job_models(engine: sa.Engine, job: Any) -> Iterator[Point]:
    """A theory scan job's models, read from its stored document one at a time."""
    key = JobInputs.from_json(job.inputs).models
    if key is None:
        raise InputError("this job scans no theory models")
    return models_from_lines(model_lines(engine, key), "models")


class PalletCache:
    """The pallets of recent jobs, so that following a job does not rebuild them.

    Args:
        engine: The service database.
        size: How many jobs' pallets to keep.
    """

    def __init__(self, engine: sa.Engine, size: int = 8) -> None:
        self.engine = engine
        self.size = size
        self._pallets: OrderedDict[tuple[str, str | None, str], list[NamedPallet]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: Any) -> list[NamedPallet]:
        """The named pallets of a job row (see :func:`job_pallets`)."""
        key = (job.workspace_digest, job.patchset_digest, json.dumps(job.inputs, sort_keys=True))
        with self._lock:
            if key in self._pallets:
                self._pallets.move_to_end(key)
                return self._pallets[key]
        pallets = job_pallets(self.engine, job)
        with self._lock:
            self._pallets[key] = pallets
            while len(self._pallets) > self.size:
                self._pallets.popitem(last=False)
        return pallets

    def one(self, job: Any, name: str | None = None) -> Pallet:
        """One pallet of a job: the named one of a sweep (default its first), else its
        pallet.

        Raises:
            InputError: No pallet of that name in the job.
        """
        pallets = self.get(job)
        if name is None:
            return pallets[0][1]
        for each, pallet in pallets:
            if each == name:
                return pallet
        raise InputError(
            f"no pallet '{name}' in this job (its pallets: {', '.join(n for n, _ in pallets)})"
        )
