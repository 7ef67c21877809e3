"""Errors that fitaas reports to users as one clear line."""

from __future__ import annotations

__all__ = ["DocumentTooLarge", "FitaasError", "InputError"]


class FitaasError(Exception):
    """Base class of errors fitaas reports without a traceback.

    The message names the problem and, where possible, what to do about it.
    """


class InputError(FitaasError):
    """A file, archive, workspace, patchset, patch name or option that cannot be used.

    Args:
        message: What is wrong and what to do, in words (no command-line flags: the front
            doors name their own).
        option: The option (an argument of the library's functions) that fixes it, if
            one does, e.g. ``"par_bounds"``; the command line names its flag.
        value: A value of that option to try, e.g. ``"mu=0,50"``.
    """

    def __init__(self, message: str, *, option: str | None = None, value: str | None = None):
        super().__init__(message)
        self.option = option
        self.value = value


class DocumentTooLarge(InputError):
    """A document (an upload, a gzip file) larger than the limit it is read under."""
