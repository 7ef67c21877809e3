"""Reading JSON documents as published: gzip or not (several gzip members are one document),
within a size limit, with errors that name the file and what is wrong with it.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

from fitaas.errors import DocumentTooLarge, InputError

__all__ = [
    "gunzip",
    "load_json",
    "parse_json_bytes",
]


def gunzip(raw: bytes, source: str, limit: int | None = None) -> bytes:
    """Gunzip ``raw`` if it is gzip (else return it), never holding more than ``limit`` bytes.

    Several gzip members one after another (what ``cat a.gz b.gz`` or a parallel gzip
    writes) are one document, as ``gunzip`` reads them.

    Args:
        raw: Bytes of a file or an upload.
        source: How to name the input in an error message.
        limit: The largest decompressed size accepted, in bytes (None: no limit).

    Raises:
        InputError: Not readable gzip: damaged, cut short, or followed by other bytes.
        DocumentTooLarge: It inflates beyond the limit.
    """
    if raw[:2] != b"\x1f\x8b":
        return raw
    cap = limit if limit is not None else 2**62
    parts: list[bytes] = []
    size = 0
    rest = raw
    member = 0
    while rest:
        member += 1
        if rest[:2] != b"\x1f\x8b":
            raise InputError(
                f"{source}: {len(rest)} bytes that are not gzip after the end of the gzip data "
                f"(member {member - 1} ends at byte {len(raw) - len(rest)})"
            )
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(rest, cap + 1 - size)
        except zlib.error as exc:
            raise InputError(f"{source}: damaged gzip data ({exc})") from None
        size += len(out)
        if size > cap:
            raise DocumentTooLarge(
                f"{source}: decompresses to more than the limit of {cap / 1e6:g} MB"
            )
        if not inflater.eof:
            raise InputError(
                f"{source}: the gzip data is cut short (it ends after {len(raw)} bytes, "
                "before the end of its compressed stream): is the file complete?"
            )
        parts.append(out)
        rest = inflater.unused_data
    return b"".join(parts)


def parse_json_bytes(raw: bytes, source: str, limit: int | None = None) -> Any:
    """Parse JSON (plain or gzip-compressed) with an error that names the place.

    Args:
        raw: The bytes read from a file or an upload.
        source: How to name the input in an error message (a path, an archive member).
        limit: The largest decompressed size accepted, in bytes (None: no limit).

    Returns:
        The decoded JSON document.

    Raises:
        InputError: The bytes are not valid (gzipped) JSON.
    """
    raw = gunzip(raw, source, limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply to be a pyhf document") from None
    except ValueError as exc:  # an integer beyond Python's limit of digits (4300)
        if "digits" not in str(exc):
            raise
        limit = sys.get_int_max_str_digits()
        raise InputError(f"{source}: a JSON number of more than {limit} digits") from None


def load_json(path: str | Path) -> Any:
    """Read a ``.json`` or ``.json.gz`` file.

    Args:
        path: The file to read.

    Returns:
        The decoded JSON document.

    Raises:
        InputError: The file is missing, unreadable or not valid JSON.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_json_bytes(raw, str(path))
