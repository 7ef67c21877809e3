"""Frozen result types of the inference core, each with ``to_dict``/``from_dict``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FitResult", "HypotestResult", "UpperLimitResult", "UpperLimitScanPoint"]


@dataclass(frozen=True)
class HypotestResult:
    """A CLs hypothesis test at one value of the parameter of interest.

    Attributes:
        poi_value: The tested signal strength.
        test_stat: The test statistic used.
        cls_obs: Observed CLs.
        cls_exp: Expected CLs at -2, -1, 0, +1, +2 sigma.
        clsb_obs: Observed CLs+b (the p-value of the signal-plus-background hypothesis).
        clb_obs: Observed CLb.

    With ``test_stat="q0"`` (discovery, test at mu=0) these are pyhf's discovery values:
    ``cls_obs`` and ``clsb_obs`` are the observed p0, ``cls_exp`` the expected p0 band.
    """

    poi_value: float
    test_stat: str
    cls_obs: float
    cls_exp: tuple[float, float, float, float, float]
    clsb_obs: float
    clb_obs: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "poi_value": self.poi_value,
            "test_stat": self.test_stat,
            "cls_obs": self.cls_obs,
            "cls_exp": list(self.cls_exp),
            "clsb_obs": self.clsb_obs,
            "clb_obs": self.clb_obs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HypotestResult:
        """Inverse of :meth:`to_dict`."""
        exp = tuple(float(v) for v in data["cls_exp"])
        return cls(
            poi_value=float(data["poi_value"]),
            test_stat=str(data["test_stat"]),
            cls_obs=float(data["cls_obs"]),
            cls_exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
            clsb_obs=float(data["clsb_obs"]),
            clb_obs=float(data["clb_obs"]),
        )


@dataclass(frozen=True, order=True)
class UpperLimitScanPoint:
    """CLs at one tested POI value, as visited while computing an upper limit."""

    poi_value: float
    cls_obs: float
    cls_exp: tuple[float, ...]


@dataclass(frozen=True)
class UpperLimitResult:
    """Observed and expected upper limits on the parameter of interest.

    Attributes:
        level: The CLs level of the limit (0.05 for 95% CL).
        obs: Observed upper limit.
        exp: Expected upper limits at -2, -1, 0, +1, +2 sigma.
        method: ``"toms748"`` (root finding) or ``"grid"``.
        scan: The POI values tested, with observed and expected CLs, in increasing POI.
    """

    level: float
    obs: float
    exp: tuple[float, float, float, float, float]
    method: str
    scan: tuple[UpperLimitScanPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "level": self.level,
            "obs": self.obs,
            "exp": list(self.exp),
            "method": self.method,
            "scan": [
                {"poi_value": p.poi_value, "cls_obs": p.cls_obs, "cls_exp": list(p.cls_exp)}
                for p in self.scan
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpperLimitResult:
        """Inverse of :meth:`to_dict`."""
        exp = tuple(float(v) for v in data["exp"])
        return cls(
            level=float(data["level"]),
            obs=float(data["obs"]),
            exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
            method=str(data["method"]),
            scan=tuple(
                UpperLimitScanPoint(
                    float(p["poi_value"]), float(p["cls_obs"]), tuple(map(float, p["cls_exp"]))
                )
                for p in data.get("scan", [])
            ),
        )


@dataclass(frozen=True)
class FitResult:
    """A maximum-likelihood fit.

    Attributes:
        parameters: Parameter names, one per fitted value (``name[i]`` for vector parameters).
        bestfit: Best-fit values.
        uncertainties: Symmetric uncertainties from the Hessian (0 for fixed parameters).
        twice_nll: Twice the negative log-likelihood at the minimum.
        converged: Whether the optimizer reported success.
        nfev: Number of objective evaluations.
        message: The optimizer's message.
    """

    parameters: tuple[str, ...]
    bestfit: tuple[float, ...]
    uncertainties: tuple[float, ...]
    twice_nll: float
    converged: bool
    nfev: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "parameters": list(self.parameters),
            "bestfit": list(self.bestfit),
            "uncertainties": list(self.uncertainties),
            "twice_nll": self.twice_nll,
            "converged": self.converged,
            "nfev": self.nfev,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            parameters=tuple(data["parameters"]),
            bestfit=tuple(float(v) for v in data["bestfit"]),
            uncertainties=tuple(float(v) for v in data["uncertainties"]),
            twice_nll=float(data["twice_nll"]),
            converged=bool(data["converged"]),
            nfev=int(data["nfev"]),
            message=str(data["message"]),
        )
