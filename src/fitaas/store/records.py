"""The results store's vocabulary: the key of a result, what is stored, the table's columns,
and the protocol every store implements (:mod:`fitaas.store.sqlite`, :mod:`fitaas.store.sql`).

A key is the digest of (workspace digest, patch digest, task kind, the options that
kind depends on, pyhf version): asking twice computes once, and an interrupted scan
resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from fitaas.inputs.digests import digest

__all__ = [
    "COLUMNS",
    "INDEX",
    "Column",
    "Record",
    "ResultStore",
    "StoredOutcome",
    "chunks",
    "result_key",
    "store_label",
]


@dataclass(frozen=True)
class Column:
    """One column of the results table (both stores build their table from these)."""

    name: str
    kind: str  # "text" or "float"
    length: int | None = None  # a bounded string where a database wants one
    nullable: bool = False


# The results table: one definition for the SQLite store and the SQL one.
COLUMNS = (
    Column("key", "text", 64),
    Column("workspace_digest", "text", 64),
    Column("patch", "text", nullable=True),
    Column("patch_digest", "text", 64),
    Column("kind", "text", 16),
    Column("options", "text"),
    Column("pyhf_version", "text", 32),
    Column("status", "text", 16),
    Column("outcome", "text"),
    Column("created", "float"),
)
INDEX = ("results_by_workspace", ("workspace_digest", "kind"))


def result_key(
    workspace_digest: str,
    patch_digest: str,
    kind: str,
    options: Mapping[str, Any],
    pyhf_version: str,
) -> str:
    """The content key of one result.

    Args:
        workspace_digest: Digest of the background-only workspace.
        patch_digest: Digest of the patch operations.
        kind: ``"hypotest"``, ``"upper_limit"`` or ``"fit"``.
        options: The options this kind depends on (``InferenceOptions.for_kind``).
        pyhf_version: The pyhf version computing it.

    Returns:
        A hex sha256 digest.
    """
    return digest(
        {
            "workspace": workspace_digest,
            "patch": patch_digest,
            "kind": kind,
            "options": dict(options),
            "pyhf": pyhf_version,
        }
    )


@dataclass(frozen=True)
class StoredOutcome:
    """One stored outcome: ``{"status", "result", "error", "seconds"}`` and when it was made."""

    key: str
    status: str
    outcome: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Record:
    """One outcome to store, with what its key is made of (the table's columns).

    Attributes:
        key: Its content key (:func:`result_key`).
        workspace_digest: Digest of the background-only workspace.
        patch: The patch's name (for people reading the table).
        patch_digest: Digest of the patch operations.
        kind: The task kind (``"hypotest"``, ...; ``"toys"`` for a block of toys).
        options: The options the kind depends on.
        pyhf_version: The pyhf version that computed it.
        outcome: The outcome as JSON (``Outcome.to_dict``, or a block of toys).
    """

    key: str
    workspace_digest: str
    patch: str | None
    patch_digest: str
    kind: str
    options: Mapping[str, Any]
    pyhf_version: str
    outcome: Mapping[str, Any]

    def row(self) -> dict[str, Any]:
        """As a row of the results table (``COLUMNS``), stamped now."""
        return {
            "key": self.key,
            "workspace_digest": self.workspace_digest,
            "patch": self.patch,
            "patch_digest": self.patch_digest,
            "kind": self.kind,
            "options": json.dumps(dict(self.options), sort_keys=True),
            "pyhf_version": self.pyhf_version,
            "status": self.outcome["status"],
            "outcome": json.dumps(dict(self.outcome)),
            "created": time.time(),
        }


@runtime_checkable
class ResultStore(Protocol):
    """What a results store does: outcomes by content key (:func:`open_store` opens one)."""

    path: str

    def get(self, keys: Iterable[str]) -> dict[str, StoredOutcome]:
        """The stored outcomes among ``keys``, by key."""
        ...

    def put(self, record: Record) -> None:
        """Store (or replace) one outcome, committed at once."""
        ...

    def count(self, status: str | None = None) -> int:
        """How many outcomes are stored (with the given status, if any)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store_label(where: str | Path) -> str:
    """How to name a store to a user: its path, or its URL without the password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", str(where))
