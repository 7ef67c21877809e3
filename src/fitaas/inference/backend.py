"""Choosing pyhf's backend and optimizer for the duration of a task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyhf

from fitaas.errors import InputError
from fitaas.inference.options import InferenceOptions

__all__ = ["pyhf_backend"]

_EXTRA = {"jax": "jax", "minuit": "minuit"}


def _optimizer(options: InferenceOptions) -> Any:
    kwargs: dict[str, Any] = {}
    if options.tolerance is not None:
        kwargs["tolerance"] = options.tolerance
    if options.maxiter is not None:
        kwargs["maxiter"] = options.maxiter
    try:
        if options.optimizer == "minuit":
            return pyhf.optimize.minuit_optimizer(**kwargs)
        return pyhf.optimize.scipy_optimizer(**kwargs)
    except (ImportError, pyhf.exceptions.ImportBackendError) as exc:
        raise InputError(
            f"the {options.optimizer} optimizer is not available ({exc}); "
            f"install it with: pip install 'fitaas[{_EXTRA[options.optimizer]}]'"
        ) from None


@contextmanager
def pyhf_backend(options: InferenceOptions) -> Iterator[None]:
    """Set pyhf's backend and optimizer from ``options``; restore the previous ones after.

    pyhf keeps its backend in process-global state; this is the only place fitaas
    touches it, and always inside the task that needs it.

    Args:
        options: The inference options naming backend, optimizer and tolerance.

    Yields:
        Nothing; pyhf is configured inside the ``with`` block.

    Raises:
        InputError: The backend or optimizer cannot be imported (missing extra).
    """
    previous = pyhf.get_backend()
    optimizer = _optimizer(options)
    try:
        pyhf.set_backend(options.backend, optimizer, precision="64b")
    except (ImportError, pyhf.exceptions.ImportBackendError) as exc:
        raise InputError(
            f"the {options.backend} backend is not available ({exc}); "
            f"install it with: pip install 'fitaas[{_EXTRA.get(options.backend, options.backend)}]'"
        ) from None
    try:
        yield
    finally:
        pyhf.set_backend(*previous)
