"""Frozen result types of the inference core, each with ``to_dict``/``from_dict``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy.stats import norm

from fitaas.inference.arrays import decode_array
from fitaas.inference.teststats import test_statistic

__all__ = [
    "FitResult",
    "HypotestResult",
    "ToySummary",
    "UpperLimitResult",
    "UpperLimitScanPoint",
    "significance",
    "strict_json",
]


def significance(p0: float) -> float:
    """The significance Z of a p-value: the one-sided Gaussian quantile (inf at p0 = 0)."""
    if not math.isfinite(p0) or p0 > 1 or p0 < 0:
        return math.nan
    if p0 == 0:
        return math.inf
    if p0 == 1:
        return -math.inf
    # (not inv_cdf(1 - p0): 1 - p0 rounds to 1 below p0 ~ 1e-16, an error there, and loses
    # digits long before)
    return float(norm.isf(p0))


@dataclass(frozen=True)
class ToySummary:
    """How a toy-based hypothesis test was computed, and its Monte-Carlo uncertainties.

    Attributes:
        ntoys_sb: Toys of the signal-plus-background ensemble used (failed ones left out).
        ntoys_b: Toys of the background-only ensemble used.
        failed_sb: Toys of the signal-plus-background ensemble whose fits failed.
        failed_b: Toys of the background-only ensemble whose fits failed.
        seed: The seed of the toys.
        teststat_obs: The observed test statistic.
        cls_obs_error: Uncertainty of ``cls_obs`` (binomial, both ensembles).
        cls_exp_error: Uncertainties of the expected band (bootstrap over the toys).
        clsb_obs_error: Uncertainty of ``clsb_obs`` (binomial).
        clb_obs_error: Uncertainty of ``clb_obs`` (binomial).
        teststats_sb: The signal-plus-background test statistics, base64 float32.
        teststats_b: The background-only test statistics, base64 float32.
    """

    ntoys_sb: int
    ntoys_b: int
    failed_sb: int
    failed_b: int
    seed: int
    teststat_obs: float
    cls_obs_error: float
    cls_exp_error: tuple[float, ...]
    clsb_obs_error: float
    clb_obs_error: float
    teststats_sb: str = ""
    teststats_b: str = ""

    def distributions(self) -> tuple[Any, Any]:
        """The two test-statistic distributions as numpy arrays (float32 precision)."""

        return decode_array(self.teststats_sb, "float32"), decode_array(self.teststats_b, "float32")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "ntoys": {"sb": self.ntoys_sb, "b": self.ntoys_b},
            "failed": {"sb": self.failed_sb, "b": self.failed_b},
            "seed": self.seed,
            "teststat_obs": self.teststat_obs,
            "errors": {
                "cls_obs": self.cls_obs_error,
                "cls_exp": list(self.cls_exp_error),
                "clsb_obs": self.clsb_obs_error,
                "clb_obs": self.clb_obs_error,
            },
            "teststats": {"dtype": "float32", "sb": self.teststats_sb, "b": self.teststats_b},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToySummary:
        """Inverse of :meth:`to_dict`."""
        errors = data["errors"]
        stats = data.get("teststats") or {}
        return cls(
            ntoys_sb=int(data["ntoys"]["sb"]),
            ntoys_b=int(data["ntoys"]["b"]),
            failed_sb=int(data["failed"]["sb"]),
            failed_b=int(data["failed"]["b"]),
            seed=int(data["seed"]),
            teststat_obs=_number(data["teststat_obs"]),
            cls_obs_error=_number(errors["cls_obs"]),
            cls_exp_error=tuple(_number(v) for v in errors["cls_exp"]),
            clsb_obs_error=_number(errors["clsb_obs"]),
            clb_obs_error=_number(errors["clb_obs"]),
            teststats_sb=str(stats.get("sb", "")),
            teststats_b=str(stats.get("b", "")),
        )


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def strict_json(value: Any) -> Any:
    """Strict JSON values: NaN and infinities (a CLs of 0/0 at a point without sensitivity)
    as null, in nested dicts and lists; the ``from_dict`` methods read null back as NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


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
    ``cls_obs`` and ``clsb_obs`` are the observed p0, ``cls_exp`` the expected p0 band;
    :attr:`p0_obs`, :attr:`p0_exp`, :attr:`z_obs` and :attr:`z_exp` name them (and the
    results JSON carries them under those names).
    """

    poi_value: float
    test_stat: str
    cls_obs: float
    cls_exp: tuple[float, float, float, float, float]
    clsb_obs: float
    clb_obs: float
    calctype: str = "asymptotics"
    toys: ToySummary | None = None

    @property
    def discovery(self) -> bool:
        """Whether this is a discovery test (``q0``): p0 and Z instead of CLs."""
        return test_statistic(self.test_stat).discovery

    @property
    def p0_obs(self) -> float | None:
        """Observed p0 of a discovery test (``None`` otherwise)."""
        return self.clsb_obs if self.discovery else None

    @property
    def p0_exp(self) -> tuple[float, ...] | None:
        """Expected p0 (-2..+2 sigma) of a discovery test (``None`` otherwise)."""
        return self.cls_exp if self.discovery else None

    @property
    def z_obs(self) -> float | None:
        """Observed significance of a discovery test (``None`` otherwise)."""
        return significance(self.clsb_obs) if self.discovery else None

    @property
    def z_exp(self) -> tuple[float, ...] | None:
        """Expected significances (-2..+2 sigma) of a discovery test (``None`` otherwise)."""
        return tuple(significance(p) for p in self.cls_exp) if self.discovery else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        out: dict[str, Any] = {
            "poi_value": self.poi_value,
            "test_stat": self.test_stat,
            "cls_obs": self.cls_obs,
            "cls_exp": list(self.cls_exp),
            "clsb_obs": self.clsb_obs,
            "clb_obs": self.clb_obs,
            "calctype": self.calctype,
            "toys": self.toys.to_dict() if self.toys else None,
        }
        if self.discovery:
            out.update(self.discovery_dict())
        return out

    def discovery_dict(self) -> dict[str, Any]:
        """``p0_obs``, ``p0_exp``, ``z_obs``, ``z_exp`` of a discovery test (else empty)."""
        if not self.discovery:
            return {}
        return {
            "p0_obs": self.p0_obs,
            "p0_exp": list(self.p0_exp or ()),
            "z_obs": self.z_obs,
            "z_exp": list(self.z_exp or ()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HypotestResult:
        """Inverse of :meth:`to_dict`."""
        exp = tuple(_number(v) for v in data["cls_exp"])
        toys = data.get("toys")
        return cls(
            poi_value=float(data["poi_value"]),
            test_stat=str(data["test_stat"]),
            cls_obs=_number(data["cls_obs"]),
            cls_exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
            clsb_obs=_number(data["clsb_obs"]),
            clb_obs=_number(data["clb_obs"]),
            calctype=str(data.get("calctype") or "asymptotics"),
            toys=ToySummary.from_dict(toys) if toys else None,
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
        exp = tuple(_number(v) for v in data["exp"])
        return cls(
            level=float(data["level"]),
            obs=_number(data["obs"]),
            exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
            method=str(data["method"]),
            scan=tuple(
                UpperLimitScanPoint(
                    float(p["poi_value"]), _number(p["cls_obs"]), tuple(map(_number, p["cls_exp"]))
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
        correlations: The correlation matrix from HESSE, in parameter order (rows and
            columns of fixed parameters 0); ``None`` in results stored before it existed.
        minos: MINOS intervals of the parameters asked for: ``{name: (lower, upper)}``, the
            signed distances from the best fit (lower negative); ``None``: none asked for.
    """

    parameters: tuple[str, ...]
    bestfit: tuple[float, ...]
    uncertainties: tuple[float, ...]
    twice_nll: float
    converged: bool
    nfev: int
    message: str
    correlations: tuple[tuple[float, ...], ...] | None = None
    minos: dict[str, tuple[float, float]] | None = None

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
            "correlations": [list(row) for row in self.correlations]
            if self.correlations is not None
            else None,
            "minos": {name: list(pair) for name, pair in self.minos.items()}
            if self.minos is not None
            else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            parameters=tuple(data["parameters"]),
            bestfit=tuple(_number(v) for v in data["bestfit"]),
            uncertainties=tuple(_number(v) for v in data["uncertainties"]),
            twice_nll=_number(data["twice_nll"]),
            converged=bool(data["converged"]),
            nfev=int(data["nfev"]),
            message=str(data["message"]),
            correlations=tuple(tuple(_number(v) for v in row) for row in data["correlations"])
            if data.get("correlations") is not None
            else None,
            minos={str(k): (_number(v[0]), _number(v[1])) for k, v in data["minos"].items()}
            if data.get("minos") is not None
            else None,
        )
