"""What a worker process keeps between tasks: workspaces by digest (the most recent
``WORKSPACES_KEPT``), the models of its last points, and the compiled structures. One per
process: the only process-wide state of a worker.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyhf

from fitaas.caches import most_recent
from fitaas.errors import FitaasError
from fitaas.inference import (
    InferenceOptions,
    build_model,
)
from fitaas.inference.core import fit_inputs
from fitaas.inference.toys import toy_reference
from fitaas.inputs.pallets import digest
from fitaas.worker.payloads import WorkspaceNotOnWorker, WorkspaceRef

__all__ = [
    "POINTS_KEPT",
    "WORKSPACES_KEPT",
    "WorkerCache",
    "worker_cache",
]


# Points whose model (and toy reference) a worker keeps for their next tasks.
POINTS_KEPT = 4

# Workspaces a worker keeps, the most recently used (a long-lived worker of a service meets
# many; one dropped comes back from its file or with the next task that needs it).
WORKSPACES_KEPT = 8


class WorkerCache:
    """Workspaces a worker process has received, by digest, built once."""

    def __init__(self) -> None:
        self._workspaces: dict[str, pyhf.Workspace] = {}
        self.configured = False
        self._structures: Any = None
        self._toy_points: dict[str, tuple[Any, Any]] = {}
        self._models: dict[str, tuple[Any, Any]] = {}

    def point_model(
        self,
        workspace: pyhf.Workspace,
        workspace_digest: str,
        point: dict[str, Any],
        options: InferenceOptions,
    ) -> tuple[Any, Any]:
        """The model and data of a point (no patch: the workspace's, POI or not), kept for
        its next tasks (the fits of a ranking or a likelihood scan)."""

        key = digest([workspace_digest, point["digest"], options.to_dict()])

        def make() -> tuple[Any, Any]:
            return build_model(workspace, point["operations"], options, without_poi=True)

        return most_recent(self._models, key, make, POINTS_KEPT)

    def toy_point(
        self,
        workspace: pyhf.Workspace,
        workspace_digest: str,
        point: dict[str, Any],
        options: InferenceOptions,
    ) -> tuple[Any, Any]:
        """The model and toy reference of a point, kept for its next blocks."""

        key = digest([workspace_digest, point["digest"], options.for_toy_block("", 0)])

        def make() -> tuple[Any, Any]:
            model, data = build_model(workspace, point["operations"], options)
            if model.config.poi_index is None:
                raise FitaasError("the model has no parameter of interest: no toys to test")
            return model, toy_reference(model, data, options, fit_inputs(model, options))

        return most_recent(self._toy_points, key, make, POINTS_KEPT)

    def structures(self) -> Any:
        """This worker's compiled model structures (the fast path), made on first use."""
        if self._structures is None:
            from fitaas.fast import StructureCache

            self._structures = StructureCache()
        return self._structures

    def __contains__(self, digest: str) -> bool:
        return digest in self._workspaces

    def install(self, digest: str, spec: dict[str, Any]) -> pyhf.Workspace:
        """Keep a (client-validated) workspace under its digest."""
        self._workspaces.pop(digest, None)
        return most_recent(
            self._workspaces,
            digest,
            lambda: pyhf.Workspace(spec, validate=False),
            WORKSPACES_KEPT,
        )

    def workspace(self, ref: WorkspaceRef, payload: bytes | None = None) -> pyhf.Workspace:
        """The workspace named by ``ref``, loaded once from the payload or the path.

        Args:
            ref: The digest (and maybe a shared path) of the workspace.
            payload: The workspace as (gzip-compressed) JSON, when the client sent it.

        Raises:
            WorkspaceNotOnWorker: The worker lacks the workspace and has no way to get it.
        """

        def load() -> pyhf.Workspace:
            if payload is not None:
                raw = payload
            elif ref.path is not None and Path(ref.path).is_file():
                raw = Path(ref.path).read_bytes()
            else:
                raise WorkspaceNotOnWorker(f"workspace {ref.digest[:12]} is not on this worker")
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            return pyhf.Workspace(json.loads(raw), validate=False)

        return most_recent(self._workspaces, ref.digest, load, WORKSPACES_KEPT)


# The one piece of process-wide state: what this worker process has received.
_CACHE = WorkerCache()


def worker_cache() -> WorkerCache:
    """This process's workspace cache."""
    return _CACHE
