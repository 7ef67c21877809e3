"""Uploaded workspaces and patchsets: validated, stored once by content digest."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import sqlalchemy as sa

from fitaas.errors import InputError
from fitaas.pallets import digest, gunzip, parse_json_bytes, validate_patchset, validate_workspace
from fitaas.service import db

__all__ = [
    "load_document",
    "owns_document",
    "store_document",
]


def store_document(
    engine: sa.Engine, raw: bytes, kind: str, user_id: int, limit: int
) -> tuple[str, bool]:
    """Validate an uploaded workspace or patchset and keep it once, by digest.

    Args:
        engine: The service database.
        raw: The request body (JSON, gzip-compressed or not).
        kind: ``"workspace"`` or ``"patchset"``.
        user_id: The uploader, who may use it from now on.
        limit: The largest decompressed size accepted, in bytes.

    Returns:
        The content digest, and whether this content was new to the service.

    Raises:
        InputError: Malformed JSON or a document that fails pyhf's schema.
    """
    text = gunzip(raw, kind, limit)
    spec = parse_json_bytes(text, kind)
    if kind == "workspace":
        validate_workspace(spec, "workspace")
    else:
        validate_patchset(spec, "patchset")
    key = digest(spec)
    compressed = gzip.compress(json.dumps(spec, sort_keys=True).encode(), compresslevel=6)
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
                            size=len(text),
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


def load_document(engine: sa.Engine, key: str) -> Any:
    """The decoded JSON of a stored document."""
    with engine.connect() as conn:
        content = conn.execute(
            sa.select(db.documents.c.content).where(db.documents.c.digest == key)
        ).scalar_one()
    return json.loads(gzip.decompress(content))
