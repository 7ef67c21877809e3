"""Numeric arrays as text: how toys' test statistics travel in JSON results and the store."""

from __future__ import annotations

import base64

import numpy as np

__all__ = ["decode_array", "encode_array"]


def encode_array(values: np.ndarray, dtype: str = "float64") -> str:
    """A numeric array as base64 text (little-endian ``dtype``)."""
    raw = np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return base64.b64encode(raw).decode()


def decode_array(text: str, dtype: str = "float64") -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(
        float
    )
