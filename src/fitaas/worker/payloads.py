"""How a task names its workspace, and the workspace's payload: nothing of statistics.

Engines and the dispatch loop need these (to install a workspace, to send it on demand)
without importing pyhf; workers (:mod:`fitaas.worker.tasks`) use them too.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

from fitaas.errors import FitaasError

__all__ = ["WorkspaceNotOnWorker", "WorkspaceRef", "compress_workspace"]


class WorkspaceNotOnWorker(FitaasError):
    """The worker lacks the workspace a task names: send it again with the payload."""


@dataclass(frozen=True)
class WorkspaceRef:
    """How a task names its workspace: a digest, and where a worker may read it.

    Attributes:
        digest: Content digest of the workspace specification.
        path: A file every worker can read (a shared filesystem), gzip-compressed JSON.
        compile_cache: A folder every worker can write for jax's compiled code (on a shared
            filesystem: what one worker compiled, workers of other blocks and nodes load),
            used unless the worker's environment sets ``FITAAS_JAX_CACHE``.
        device: What the engine's workers compute on (``"gpu"``: a worker started for the
            CPU refuses the task, naming how to start it).
    """

    digest: str
    path: str | None = None
    compile_cache: str | None = None
    device: str = "cpu"


def compress_workspace(spec: dict[str, Any]) -> bytes:
    """The workspace as gzip-compressed compact JSON, the payload of a :class:`WorkspaceRef`."""
    return gzip.compress(json.dumps(spec, separators=(",", ":")).encode(), compresslevel=6)
