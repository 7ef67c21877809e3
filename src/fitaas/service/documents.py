"""Uploaded workspaces and patchsets: validated, stored once by content digest."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from typing import Any

import sqlalchemy as sa

from fitaas.errors import InputError
from fitaas.pallets import digest, parse_json_bytes, validate_patchset, validate_workspace
from fitaas.service import db

__all__ = [
    "UploadTooLarge",
    "decompress_limited",
    "load_document",
    "owns_document",
    "store_document",
]


class UploadTooLarge(InputError):
    """An upload that inflates beyond the size limit."""


def decompress_limited(raw: bytes, limit: int, source: str) -> bytes:
    """Gunzip ``raw`` (if gzip) without ever holding more than ``limit`` bytes.

    Raises:
        InputError: Not readable gzip.
        UploadTooLarge: It inflates beyond the limit.
    """
    if raw[:2] != b"\x1f\x8b":
        return raw
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InputError(f"{source}: not a readable gzip file ({exc})") from None
    if len(out) > limit:
        raise UploadTooLarge(
            f"{source}: decompresses to more than the limit of {limit / 1e6:.0f} MB"
        )
    return out


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
    text = decompress_limited(raw, limit, kind)
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
