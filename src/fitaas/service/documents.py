"""Uploaded workspaces, patchsets and theory models: validated, stored once by content digest.

Workspaces and patchsets are kept as canonical JSON, models (JSON Lines) as one canonical
line per model; each gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from fitaas.errors import InputError
from fitaas.inputs.json_files import gunzip, parse_json_bytes
from fitaas.inputs.pallets import digest
from fitaas.inputs.theory_models import model_line, models_from_lines
from fitaas.inputs.validation import validate_patchset, validate_workspace
from fitaas.service import db

__all__ = [
    "UploadChecker",
    "checked_document",
    "load_document",
    "model_lines",
    "owns_document",
    "store_document",
]


def _checked_models(text: bytes) -> tuple[str, bytes]:
    """Theory models as JSON Lines: every line checked (one-line errors naming it), kept as
    one canonical line per model; the digest is that text's SHA-256."""
    lines = [model_line(p) for p in models_from_lines(io.BytesIO(text), "models")]
    if not lines:
        raise InputError("models: no models (one JSON object per line)")
    canonical = ("\n".join(lines) + "\n").encode()
    return hashlib.sha256(canonical).hexdigest(), canonical


def checked_document(raw: bytes, kind: str, limit: int) -> tuple[str, int, bytes]:
    """Decompress, parse and validate an upload (no database: runs in any process).

    Args:
        raw: The request body (JSON, gzip-compressed or not).
        kind: ``"workspace"``, ``"patchset"`` or ``"models"`` (JSON Lines).
        limit: The largest decompressed size accepted, in bytes.

    Returns:
        The content digest, the decompressed size, and the canonical text gzip-compressed.

    Raises:
        InputError: Malformed JSON, a document that fails pyhf's schema, or a malformed
            model (named by its line).
    """
    text = gunzip(raw, kind, limit)
    if text[257:262] == b"ustar":  # a tar archive (a published pallet as downloaded)
        raise InputError(
            f"{kind}: this is a tar archive; upload the {kind} JSON itself (plain or gzip), or "
            "let fitaas submit read the archive and upload its workspace and patchset"
        )
    if kind == "models":
        key, canonical = _checked_models(text)
        return key, len(text), gzip.compress(canonical, compresslevel=6)
    spec = parse_json_bytes(text, kind, limit)  # (gzip inside gzip: under the limit too)
    if kind == "workspace":
        validate_workspace(spec, "workspace")
    else:
        validate_patchset(spec, "patchset")
    compressed = gzip.compress(json.dumps(spec, sort_keys=True).encode(), compresslevel=6)
    return digest(spec), len(text), compressed


class UploadChecker:
    """Checks uploads: small ones in the calling thread, large ones in a worker process.

    Parsing and pyhf's schema check of a large document hold the interpreter for seconds
    (``json.loads`` of 35 MB is one call that never lets go of it); in a thread they stall
    every other request. A worker process, started at the first large upload and kept,
    leaves the service's interpreter free.

    Args:
        in_process_below: Uploads smaller than this many bytes are checked in the thread.
    """

    def __init__(self, in_process_below: int = 2_000_000) -> None:
        self.in_process_below = in_process_below
        self._pool: Any = None
        self._lock = threading.Lock()

    def _executor(self) -> Any:
        from fitaas.engines.local import local_pool  # (spawned; exits with the service)

        with self._lock:
            if self._pool is None:
                self._pool = local_pool(1)
            return self._pool

    def check(self, raw: bytes, kind: str, limit: int) -> tuple[str, int, bytes]:
        """:func:`checked_document`, where it costs the service least."""
        if len(raw) < self.in_process_below:
            return checked_document(raw, kind, limit)
        from concurrent.futures.process import BrokenProcessPool

        for attempt in range(2):
            pool = self._executor()
            try:
                checked: tuple[str, int, bytes] = pool.submit(
                    checked_document, raw, kind, limit
                ).result()
                return checked
            except BrokenProcessPool:  # the worker died (killed, out of memory): a new one
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                if attempt:
                    raise InputError(
                        f"{kind}: the upload check stopped (its worker process died; too "
                        "large for this machine's memory?)"
                    ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the worker process."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def store_document(
    engine: sa.Engine,
    raw: bytes,
    kind: str,
    user_id: int,
    limit: int,
    checker: UploadChecker | None = None,
) -> tuple[str, bool]:
    """Validate an uploaded workspace, patchset or models document and keep it once, by
    digest.

    Args:
        engine: The service database.
        raw: The request body (JSON or JSON Lines, gzip-compressed or not).
        kind: ``"workspace"``, ``"patchset"`` or ``"models"``.
        user_id: The uploader, who may use it from now on.
        limit: The largest decompressed size accepted, in bytes.
        checker: Where to parse and validate (default: in this thread).

    Returns:
        The content digest, and whether this content was new to the service.

    Raises:
        InputError: Malformed JSON or a document that fails pyhf's schema.
    """
    if checker is None:
        key, size, compressed = checked_document(raw, kind, limit)
    else:
        key, size, compressed = checker.check(raw, kind, limit)
    # Concurrent uploads of the same new content (e.g. parallel jobs with one inline
    # patchset) race to insert it: the loser's insert breaks the unique key, and its next
    # attempt finds the row.
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                found = conn.execute(
                    sa.select(db.documents.c.kind).where(db.documents.c.digest == key)
                ).scalar()
                if found is not None and found != kind:
                    raise InputError(f"this content was uploaded as a {found}, not a {kind}")
                new = found is None
                if new:
                    conn.execute(
                        sa.insert(db.documents).values(
                            digest=key,
                            kind=kind,
                            size=size,
                            content=compressed,
                            created=time.time(),
                        )
                    )
                owned = conn.execute(
                    sa.select(db.document_owners.c.digest).where(
                        db.document_owners.c.digest == key, db.document_owners.c.user_id == user_id
                    )
                ).first()
                if owned is None:
                    conn.execute(sa.insert(db.document_owners).values(digest=key, user_id=user_id))
            return key, new
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def owns_document(engine: sa.Engine, key: str, user_id: int, kind: str) -> bool:
    """Whether this user uploaded a document of this kind with this digest."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(db.documents.c.digest)
            .join(db.document_owners, db.document_owners.c.digest == db.documents.c.digest)
            .where(
                db.documents.c.digest == key,
                db.documents.c.kind == kind,
                db.document_owners.c.user_id == user_id,
            )
        ).first()
    return row is not None


def _content(engine: sa.Engine, key: str) -> bytes:
    with engine.connect() as conn:
        content: bytes = conn.execute(
            sa.select(db.documents.c.content).where(db.documents.c.digest == key)
        ).scalar_one()
    return content


def load_document(engine: sa.Engine, key: str) -> Any:
    """The decoded JSON of a stored workspace or patchset."""
    return json.loads(gzip.decompress(_content(engine, key)))


def model_lines(engine: sa.Engine, key: str) -> Iterator[bytes]:
    """The lines of a stored models document, decompressed as they are read."""
    with gzip.GzipFile(fileobj=io.BytesIO(_content(engine, key))) as text:
        yield from text
