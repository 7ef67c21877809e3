"""Content digests: what keys workspaces, patches and results, without importing pyhf.

The digest is pyhf's (``pyhf.utils.digest`` with sha256: the canonical JSON, sorted keys,
UTF-8), computed here so that the store and the service's admin commands need not import
pyhf and its numerical stack to key a record (``tests/store/test_store.py`` checks it against
pyhf's own).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["digest"]


def digest(obj: Any) -> str:
    """Content digest of a JSON-able object, as pyhf computes it.

    Args:
        obj: A JSON-able object (workspace spec, patch operations, options).

    Returns:
        The hex sha256 of its canonical JSON encoding (``pyhf.utils.digest``).

    Raises:
        ValueError: The object is not JSON-serializable.
    """
    try:
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    except TypeError:
        raise ValueError("the object is not JSON-serializable: no digest") from None
    return hashlib.sha256(text.encode("utf8")).hexdigest()
