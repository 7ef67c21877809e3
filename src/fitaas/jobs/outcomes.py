"""What one task gave for one point and kind: the typed outcome a scan assembles results
from.

Workers return outcomes as plain JSON-able mappings (every engine carries them, Globus
Compute included) and the store keeps them as JSON; the scan reads both into
:class:`Outcome` at the boundary, and writes :meth:`Outcome.to_dict` back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome"]


@dataclass(frozen=True)
class Outcome:
    """One task's outcome for one point and kind.

    Attributes:
        status: ``"ok"``, ``"suspect"`` (computed, a fit check fired) or ``"failed"``.
        result: The kind's result as a dict (``RESULT_TYPES[kind].from_dict`` reads it),
            ``None`` when it failed.
        error: Why it failed.
        seconds: Compute time.
        reason: Why it is suspect (or what a retry rescued).
        diagnostics: The fit checks' record (hypothesis tests).
    """

    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    reason: str | None = None
    diagnostics: dict[str, Any] | None = None

    @classmethod
    def failed(cls, error: str, seconds: float = 0.0) -> Outcome:
        """A task that gave no result."""
        return cls("failed", None, error, seconds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        """From a worker's or the store's mapping (a worker's traceback is left out)."""
        return cls(
            status=str(data["status"]),
            result=data.get("result"),
            error=data.get("error"),
            seconds=float(data.get("seconds") or 0.0),
            reason=data.get("reason"),
            diagnostics=data.get("diagnostics"),
        )

    def to_dict(self) -> dict[str, Any]:
        """As the store keeps it (``reason`` and ``diagnostics`` only where set)."""
        data: dict[str, Any] = {
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "seconds": self.seconds,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.diagnostics is not None:
            data["diagnostics"] = self.diagnostics
        return data
