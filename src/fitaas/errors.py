"""Errors that fitaas reports to users as one clear line."""

from __future__ import annotations

__all__ = ["DocumentTooLarge", "FitaasError", "InputError"]


class FitaasError(Exception):
    """Base class of errors fitaas reports without a traceback.

    The message names the problem and, where possible, what to do about it.
    """


class InputError(FitaasError):
    """A file, archive, workspace, patchset, patch name or option that cannot be used."""


class DocumentTooLarge(InputError):
    """A document (an upload, a gzip file) larger than the limit it is read under."""
