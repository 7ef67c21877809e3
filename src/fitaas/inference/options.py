"""Inference options: one frozen, validated, canonically serialisable record."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fitaas.choices import (
    BACKENDS,
    CALCTYPES,
    DEFAULTS,
    KINDS,
    OPTIMIZERS,
    RETRY_STRATEGIES,
    TEST_STATS,
    Kind,
)
from fitaas.errors import InputError
from fitaas.inference.teststats import test_statistic

__all__ = [
    "BACKENDS",
    "CALCTYPES",
    "KINDS",
    "OPTIMIZERS",
    "TEST_STATS",
    "InferenceOptions",
    "Kind",
    "plain_json",
]

_INTERPCODES = {
    "normsys": ("code1", "code4"),
    "histosys": ("code0", "code2", "code4p"),
}
# pyhf's codes when no modifier_settings are given
_DEFAULT_INTERPCODES = {"normsys": "code4", "histosys": "code4p"}
# The largest maxiter passed on (scipy's SLSQP takes a C int)
MAX_ITERATIONS = 10**9

# Options that every kind of task depends on; the others belong to one kind only.
_COMMON = (
    "backend",
    "optimizer",
    "tolerance",
    "maxiter",
    "modifier_settings",
    "measurement",
    "init_pars",
    "fixed_params",
    "par_bounds",
)
# What toy-based hypothesis tests depend on besides the common options (absent from the
# keys of asymptotic results, so that those stored before toys existed still match).
_TOYS = ("calctype", "ntoys", "seed", "cls_accuracy", "max_toys", "toy_block_size")
# What one block of toys depends on (its index and ensemble are added to its key).
_TOY_BLOCK = ("poi_value", "test_stat", "seed", "toy_block_size")
_PER_KIND: dict[str, tuple[str, ...]] = {
    "hypotest": ("poi_value", "test_stat", "retry_strategy"),
    "upper_limit": ("test_stat", "level", "ul_scan"),
    "fit": (),
}


def _check_number(name: str, value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        finite = number and math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite:
        raise InputError(f"option {name}: expected a finite number, got {str(value)[:40]}")
    return float(value)


def _check_mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"option {name}: expected a mapping of parameter names, got {value!r}")
    return dict(value)


@dataclass(frozen=True)
class InferenceOptions:
    """What to compute and how, for hypothesis tests, upper limits and fits.

    Attributes:
        backend: pyhf tensor backend, ``"numpy"`` or ``"jax"``.
        optimizer: ``"scipy"`` (SLSQP) or ``"minuit"``.
        tolerance: Optimizer tolerance; ``None`` keeps pyhf's default.
        maxiter: Optimizer iteration limit; ``None`` keeps pyhf's default (100000).
        poi_value: Signal strength tested by the hypothesis test.
        test_stat: ``"qtilde"``, ``"q"`` or ``"q0"``.
        modifier_settings: Interpolation codes, as pyhf's ``modifier_settings``, e.g.
            ``{"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}``;
            ``None`` keeps pyhf's defaults (code4, code4p); a modifier left out keeps its
            default (pyhf itself would fall back to code1 / code0 for it).
        measurement: Name of the workspace measurement; ``None`` for the first.
        init_pars: Initial values by parameter name (a list for vector parameters).
        fixed_params: Parameters held constant in fits, by name, at the given value.
        par_bounds: Parameter bounds by name, ``[low, high]``.
        level: Upper limits are computed at CLs = ``level`` (0.05 for 95% CL).
        ul_scan: ``(start, stop, points)`` for a grid scan of upper limits; ``None`` uses
            pyhf's TOMS748 root finding within the POI bounds.
        retry_strategy: ``"default"``: a hypothesis test whose fits look wrong is computed
            again with stricter strategies, and one whose minimum shows a sign of another
            (no certified minimum, a parameter at a bound) is fitted again from a second
            start; ``"thorough"``: as the default, with a second start for every point;
            ``"strict"``: MINUIT with the exact gradient then a trust-region Newton
            method with the exact Hessian (MINUIT on the plain path) for every fit, no
            other strategy; ``"none"``: the options' fits only, checked, never retried
            (for comparisons).
        calctype: ``"asymptotics"`` (the default: asymptotic formulae) or ``"toybased"``
            (pseudo-experiments; hypothesis tests only).
        ntoys: Toys per ensemble (signal plus background, background only), as pyhf's
            ``ntoys``; used with ``calctype="toybased"``.
        seed: Seed of the toys: with the same seed the same toys, bit for bit, on any
            number of workers and any engine.
        cls_accuracy: Keep adding toys until the Monte-Carlo uncertainty of the observed
            CLs (p0 for ``q0``) is below this (as CMS Combine's ``--clsAcc``), up to
            ``max_toys``; ``None``: exactly ``ntoys``.
        max_toys: The most toys per ensemble ``cls_accuracy`` may ask for (at least
            ``ntoys``).
        toy_block_size: Toys per block: the unit of work, storage and seeding. Blocks are
            always computed whole (``ntoys`` uses the first toys of the blocks), so that
            more toys extend a run.
        fast: Minimise with -2lnL and its exact gradient compiled once per model
            structure (jax; :mod:`fitaas.fast`) instead of finite differences; pyhf's
            numpy backend does the statistics. Needs ``backend="numpy"``; applies to the
            scipy optimizer (MINUIT retries run the plain way). ``None`` (the default):
            on wherever it applies (numpy backend, scipy optimizer, jax installed);
            ``False``: pyhf's own fits, the plain path.
        fit_timeout: Seconds one minimisation may take before it is stopped and the point
            (or block of toys) fails with that reason; ``None``: no limit. Not part of a
            result's key: it does not change a result that is computed.
        lockstep: On the fast path (elsewhere ignored), the fits of the asymptotic
            hypothesis tests of a task's points of one model structure run together, one
            compiled call for all of them per step (:mod:`fitaas.inference.lockstep`); the
            tests are otherwise unchanged. Minima equal the one-at-a-time fits' within
            the fit tolerance.
    """

    backend: str = DEFAULTS["backend"]
    optimizer: str = DEFAULTS["optimizer"]
    tolerance: float | None = None
    maxiter: int | None = None
    poi_value: float = DEFAULTS["poi_value"]
    test_stat: str = DEFAULTS["test_stat"]
    modifier_settings: Mapping[str, Mapping[str, str]] | None = None
    measurement: str | None = None
    init_pars: Mapping[str, Any] = field(default_factory=dict)
    fixed_params: Mapping[str, Any] = field(default_factory=dict)
    par_bounds: Mapping[str, Any] = field(default_factory=dict)
    level: float = DEFAULTS["level"]
    ul_scan: tuple[float, float, int] | None = None
    retry_strategy: str = DEFAULTS["retry_strategy"]
    calctype: str = DEFAULTS["calctype"]
    ntoys: int = DEFAULTS["ntoys"]
    seed: int = DEFAULTS["seed"]
    cls_accuracy: float | None = None
    max_toys: int = DEFAULTS["max_toys"]
    toy_block_size: int = DEFAULTS["toy_block_size"]
    fast: bool | None = None
    fit_timeout: float | None = DEFAULTS["fit_timeout"]
    lockstep: bool = False

    def pyhf_modifier_settings(self) -> dict[str, dict[str, str]] | None:
        """``modifier_settings`` as pyhf takes them (plain dicts), ``None`` for its defaults."""
        settings = self.modifier_settings
        return {k: dict(v) for k, v in settings.items()} if settings is not None else None

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_toys()
        self._check_fits()
        self._check_modifier_settings()
        self._check_parameters()
        self._check_ul_scan()

    def _check_choices(self) -> None:
        """Backend, optimizer, test statistic, calculator, strategy; the fast path resolved."""
        if self.backend not in BACKENDS:
            raise InputError(f"option backend: '{self.backend}' is not one of {BACKENDS}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"option optimizer: '{self.optimizer}' is not one of {OPTIMIZERS}")
        test_statistic(self.test_stat)  # (an unknown name: its error names the known ones)
        if self.fast is None:  # frozen: resolved once, so keys and results say which path
            object.__setattr__(
                self,
                "fast",
                self.backend == "numpy" and self.optimizer == "scipy" and _jax_installed(),
            )
        if not isinstance(self.fast, bool):
            raise InputError(f"option fast: must be true, false or null, got {self.fast!r}")
        if self.fast and self.backend != "numpy":
            raise InputError("option fast: works with backend 'numpy' (pyhf's statistics)")
        if not isinstance(self.lockstep, bool):
            raise InputError(f"option lockstep: must be true or false, got {self.lockstep!r}")
        if self.calctype not in CALCTYPES:
            raise InputError(f"option calctype: '{self.calctype}' is not one of {CALCTYPES}")
        if self.retry_strategy not in RETRY_STRATEGIES:
            raise InputError(
                f"option retry_strategy: '{self.retry_strategy}' is not one of "
                + ", ".join(f"'{name}'" for name in RETRY_STRATEGIES)
            )

    def _check_toys(self) -> None:
        """Toy counts, seed and accuracy."""
        for name in ("ntoys", "max_toys", "toy_block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"option {name}: must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"option seed: must be a non-negative integer, got {self.seed!r}")
        if self.cls_accuracy is not None and not (
            0 < _check_number("cls_accuracy", self.cls_accuracy) < 1
        ):
            raise InputError(
                f"option cls_accuracy: must lie between 0 and 1, got {self.cls_accuracy}"
            )

    def _check_fits(self) -> None:
        """The optimizer's limits, the measurement, the tested value and the CL level."""
        if self.fit_timeout is not None and not _check_number("fit_timeout", self.fit_timeout) > 0:
            raise InputError(f"option fit_timeout: must be positive, got {self.fit_timeout}")
        if self.tolerance is not None and _check_number("tolerance", self.tolerance) <= 0:
            raise InputError("option tolerance: must be positive")
        if self.maxiter is not None and (
            isinstance(self.maxiter, bool)
            or not isinstance(self.maxiter, int)
            or not 1 <= self.maxiter <= MAX_ITERATIONS
        ):
            raise InputError(
                f"option maxiter: must be an integer from 1 to {MAX_ITERATIONS}, "
                f"got {str(self.maxiter)[:40]}"
            )
        if self.measurement is not None and not isinstance(self.measurement, str):
            raise InputError(f"option measurement: expected a name, got {self.measurement!r}")
        _check_number("poi_value", self.poi_value)
        if not 0 < _check_number("level", self.level) < 1:
            raise InputError(f"option level: must lie between 0 and 1, got {self.level}")

    def _check_modifier_settings(self) -> None:
        """Known modifiers and codes; completed with pyhf's defaults for the others."""
        if self.modifier_settings is None:
            return
        settings = _check_mapping("modifier_settings", self.modifier_settings)
        for modifier, conf in settings.items():
            codes = _INTERPCODES.get(modifier)
            if codes is None:
                raise InputError(
                    f"option modifier_settings: unknown modifier '{modifier}' "
                    f"(known: {', '.join(_INTERPCODES)})"
                )
            if not isinstance(conf, Mapping) or conf.get("interpcode") not in codes:
                raise InputError(
                    f"option modifier_settings: {modifier} needs "
                    f"{{'interpcode': one of {codes}}}, got {conf!r}"
                )
        # pyhf falls back to code1 / code0 for a modifier the mapping leaves out, not to
        # its defaults: a setting here changes only the modifier it names.
        complete = {m: {"interpcode": code} for m, code in _DEFAULT_INTERPCODES.items()}
        complete.update({m: dict(conf) for m, conf in settings.items()})
        object.__setattr__(self, "modifier_settings", complete)

    def _check_parameters(self) -> None:
        """Initial values, fixed values and bounds by parameter name."""
        for name in ("init_pars", "fixed_params", "par_bounds"):
            _check_mapping(name, getattr(self, name))
        for name in ("init_pars", "fixed_params"):
            for par, value in getattr(self, name).items():
                for number in value if isinstance(value, list | tuple) else [value]:
                    _check_number(f"{name} {par}", number)
        for par, bounds in self.par_bounds.items():
            if not (isinstance(bounds, list | tuple) and len(bounds) == 2):
                raise InputError(f"option par_bounds: {par} needs [low, high], got {bounds!r}")
            low, high = (_check_number(f"par_bounds {par}", b) for b in bounds)
            if low >= high:
                raise InputError(f"option par_bounds: {par} has low >= high ({low}, {high})")

    def _check_ul_scan(self) -> None:
        """An upper limit's grid: (start, stop, points), normalised to a tuple."""
        if self.ul_scan is None:
            return
        if not (isinstance(self.ul_scan, list | tuple) and len(self.ul_scan) == 3):
            raise InputError(
                f"option ul_scan: expected (start, stop, points), got {self.ul_scan!r}"
            )
        start, stop = (_check_number("ul_scan", v) for v in self.ul_scan[:2])
        points = self.ul_scan[2]
        if not isinstance(points, int) or points < 2 or start >= stop:
            raise InputError(
                f"option ul_scan: needs start < stop and at least 2 points, got {self.ul_scan!r}"
            )
        object.__setattr__(self, "ul_scan", (start, stop, points))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceOptions:
        """Build options from a mapping, refusing unknown keys by name.

        Args:
            data: Option names and values (as produced by :meth:`to_dict`).

        Returns:
            The validated options.

        Raises:
            InputError: An unknown option or an invalid value.
        """
        data = _without_device(data)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        if isinstance(values.get("ul_scan"), list):
            values["ul_scan"] = tuple(values["ul_scan"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All options as plain JSON-able values."""
        out = asdict(self)
        for name in ("modifier_settings", "init_pars", "fixed_params", "par_bounds"):
            if out[name] is not None:
                out[name] = {k: plain_json(v) for k, v in dict(out[name]).items()}
        if out["ul_scan"] is not None:
            out["ul_scan"] = list(out["ul_scan"])
        return out

    def for_kind(self, kind: str) -> dict[str, Any]:
        """The options a result of ``kind`` depends on: part of its content key.

        Args:
            kind: ``"hypotest"``, ``"upper_limit"`` or ``"fit"``.

        Returns:
            The relevant options as a plain mapping.
        """
        full = self.to_dict()
        out = {name: full[name] for name in (*_COMMON, *_PER_KIND[kind])}
        if kind == "hypotest" and self.toybased:
            out.update({name: full[name] for name in _TOYS})
            del out["retry_strategy"]
        if self.fast:  # (absent when off: keys of results stored before it existed hold)
            out["fast"] = True
        if self.lockstep and self.fast and kind == "hypotest" and not self.toybased:
            out["lockstep"] = True
        return out

    def for_toy_block(self, ensemble: str, index: int) -> dict[str, Any]:
        """The options one block of toys depends on, with its ensemble and index: its key."""
        full = self.to_dict()
        out = {name: full[name] for name in (*_COMMON, *_TOY_BLOCK)}
        out.update({"ensemble": ensemble, "block": int(index), "fast": bool(self.fast)})
        return out

    @property
    def toybased(self) -> bool:
        """Whether hypothesis tests use pseudo-experiments."""
        return self.calctype == "toybased"


def _jax_installed() -> bool:
    return importlib.util.find_spec("jax") is not None


def plain_json(value: Any) -> Any:
    """A copy of JSON-like data made of plain dicts and lists (mappings and tuples too):
    every container new, numbers and strings shared. (Scalars are not visited one call
    each: a 1Lbb model's specification copies in 0.05 s, as pyhf.Model's copy: see
    :func:`fitaas.inference.core.patched_spec`.)"""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: v if type(v) in _SCALARS else plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [v if type(v) in _SCALARS else plain_json(v) for v in value]
    return value


_SCALARS = (str, int, float, bool, type(None))


def _without_device(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Options of an earlier version carried ``device`` (where work runs, never part of a
    result): ``"cpu"`` is dropped (stored results, files); ``"gpu"`` is refused, naming
    where it goes now."""
    if "device" not in data:
        return data
    if data["device"] not in (None, "cpu"):
        raise InputError(
            f"option device: {data['device']!r} is not an inference option (where work runs "
            "is not part of a result): --device gpu on the command line, "
            "fitaas.Compute(device='gpu') in Python, an endpoint with device = \"gpu\" "
            "on the service"
        )
    return {k: v for k, v in data.items() if k != "device"}
