"""Command-line options shared by the inference commands, and their parsing."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fitaas.choices import (
    BACKENDS,
    CALCTYPES,
    DEFAULTS,
    DEVICES,
    OPTIMIZERS,
    RETRY_STRATEGIES,
    TEST_STATS,
)
from fitaas.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - pyhf is imported only when a command runs
    from fitaas.inference import InferenceOptions

__all__ = [
    "IDLE_FOR_FITS",
    "TOY_OPTIONS",
    "grid_from_cli",
    "hide_options",
    "inference_options",
    "options_from_cli",
    "stack",
]

F = TypeVar("F", bound=Callable[..., Any])

# The options of pseudo-experiments (idle for every command but hypothesis tests and scans).
TOY_OPTIONS = ("calctype", "ntoys", "seed", "cls_accuracy", "max_toys", "toy_block_size")
# The inference options that do nothing for a fit, ranking or likelihood scan.
IDLE_FOR_FITS = ("poi_value", "test_stat", "cl", "ul_scan", "retry_strategy", *TOY_OPTIONS)


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def hide_options(*names: str) -> Callable[[F], F]:
    """Hide options (by parameter name) from a command's ``--help``: those that do nothing
    for it. Apply after the decorators that add them."""

    def apply(func: F) -> F:
        for param in getattr(func, "__click_params__", []):
            if param.name in names and isinstance(param, click.Option):
                param.hidden = True
        return func

    return apply


def inference_options(func: F) -> F:
    """The options of :class:`~fitaas.inference.InferenceOptions`."""
    return stack(
        click.option(
            "--poi-value",
            "--test-poi",
            "poi_value",
            type=float,
            default=DEFAULTS["poi_value"],
            show_default=True,
            help="Signal strength to test.",
        ),
        click.option(
            "--test-stat",
            type=click.Choice(TEST_STATS),
            default=DEFAULTS["test_stat"],
            show_default=True,
        ),
        click.option(
            "--backend", type=click.Choice(BACKENDS), default=DEFAULTS["backend"], show_default=True
        ),
        click.option(
            "--optimizer",
            type=click.Choice(OPTIMIZERS),
            default=DEFAULTS["optimizer"],
            show_default=True,
        ),
        click.option("--tolerance", type=float, help="Optimizer tolerance (default: pyhf's)."),
        click.option("--maxiter", type=click.IntRange(min=1), help="Optimizer iteration limit."),
        click.option(
            "--fit-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULTS["fit_timeout"],
            show_default=True,
            help="Seconds one fit may take; past it, its point fails with that reason.",
        ),
        click.option(
            "--interpcode",
            multiple=True,
            metavar="MODIFIER=CODE",
            help=(
                "Interpolation code, e.g. normsys=code1 histosys=code0 (repeatable); a "
                "modifier not named keeps pyhf's default (normsys=code4, histosys=code4p)."
            ),
        ),
        click.option(
            "--modifier-settings",
            metavar="JSON",
            help='pyhf modifier_settings as JSON, e.g. \'{"normsys": {"interpcode": "code4"}}\'.',
        ),
        click.option(
            "--measurement", metavar="NAME", help="Workspace measurement (default: the first)."
        ),
        click.option(
            "--init",
            "init_pars",
            multiple=True,
            metavar="PAR=VALUE",
            help="Initial value (repeatable).",
        ),
        click.option(
            "--fix",
            "fixed",
            multiple=True,
            metavar="PAR=VALUE",
            help="Fix a parameter (repeatable).",
        ),
        click.option(
            "--bounds", multiple=True, metavar="PAR=LOW,HIGH", help="Parameter bounds (repeatable)."
        ),
        click.option(
            "--cl",
            type=float,
            default=round(1.0 - DEFAULTS["level"], 12),
            show_default=True,
            help="Confidence level of upper limits.",
        ),
        click.option(
            "--retry-strategy",
            type=click.Choice(RETRY_STRATEGIES),
            default=DEFAULTS["retry_strategy"],
            show_default=True,
            help="default: retry hypothesis tests whose fits look wrong with stricter "
            "strategies, and fit points with a sign of a second minimum from a second start; "
            "thorough: a second start for every point and several starts for every free fit; "
            "strict: MINUIT with the exact gradient, then Newton's method, only; "
            "none: check, never retry (no second or mirror starts).",
        ),
        click.option(
            "--fast/--plain",
            default=None,
            help="--fast (the default wherever it applies: numpy backend, scipy optimizer): "
            "fit with -2lnL and its exact gradient compiled once per model structure (jax), "
            "pyhf doing the statistics; --plain: pyhf's own fits, number for number.",
        ),
        click.option(
            "--lockstep",
            is_flag=True,
            help="Fit the hypothesis tests of a task's points of one model structure "
            "together, one compiled call for all per step (fast path; tasks of 32 points "
            "unless --batch-size).",
        ),
        click.option(
            "--device",
            type=click.Choice(DEVICES),
            default="cpu",
            show_default=True,
            help="gpu: the workers compute on the GPU (jax with CUDA), in lockstep, one "
            "worker per GPU (default 1), GPU memory allocated as needed.",
        ),
        click.option(
            "--ul-scan",
            metavar="START,STOP,POINTS",
            help="Upper limits from a grid of POI values (default: root finding).",
        ),
        click.option(
            "--calctype",
            type=click.Choice(CALCTYPES),
            default=DEFAULTS["calctype"],
            show_default=True,
            help="Hypothesis tests from asymptotic formulae or from pseudo-experiments (toys).",
        ),
        click.option(
            "--ntoys",
            type=click.IntRange(min=1),
            default=DEFAULTS["ntoys"],
            show_default=True,
            help="Toys per ensemble (signal+background, background only), as pyhf's ntoys.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=DEFAULTS["seed"],
            show_default=True,
            help="Seed of the toys: the same seed gives the same toys on any workers.",
        ),
        click.option(
            "--cls-accuracy",
            type=float,
            metavar="A",
            help="Add toys until the uncertainty of the observed CLs is below A "
            "(as Combine's --clsAcc), up to --max-toys.",
        ),
        click.option(
            "--max-toys",
            type=click.IntRange(min=1),
            default=DEFAULTS["max_toys"],
            show_default=True,
            help="The most toys per ensemble --cls-accuracy may ask for.",
        ),
        click.option(
            "--toy-block-size",
            type=click.IntRange(min=1),
            default=DEFAULTS["toy_block_size"],
            show_default=True,
            help="Toys per block: the unit of work, storage and seeding.",
        ),
    )(func)


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"{what}: expected NAME=VALUE, got '{item}'")
        out[name.strip()] = value.strip()
    return out


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got '{text}'") from None


def _number_or_list(text: str, what: str) -> float | list[float]:
    values = _numbers(text, what)
    return values[0] if len(values) == 1 else values


def grid_from_cli(text: str | None, flag: str, form: str) -> tuple[float, float, int] | None:
    """``LOW,HIGH,N`` of a grid option (``None`` when not given)."""
    if not text:
        return None
    values = _numbers(text, flag)
    if len(values) != 3 or not values[2].is_integer():
        raise InputError(f"{flag}: expected {form}, got '{text}'")
    return values[0], values[1], int(values[2])


def options_from_cli(params: dict[str, Any]) -> InferenceOptions:
    """Build :class:`InferenceOptions` from the parsed command-line parameters.

    Args:
        params: The click parameters of a command decorated with :func:`inference_options`.

    Returns:
        The validated options.

    Raises:
        InputError: A malformed option value, named.
    """
    from fitaas.inference import InferenceOptions

    settings: dict[str, Any] | None = None
    if params.get("modifier_settings"):
        try:
            settings = json.loads(params["modifier_settings"])
        except json.JSONDecodeError as exc:
            raise InputError(f"--modifier-settings: not valid JSON ({exc.msg})") from None
    codes = _pairs(params.get("interpcode") or (), "--interpcode")
    if codes:
        settings = dict(settings or {})
        settings.update({modifier: {"interpcode": code} for modifier, code in codes.items()})
    ul_scan = grid_from_cli(params.get("ul_scan"), "--ul-scan", "START,STOP,POINTS")
    cl = params.get("cl", 0.95)
    if not 0 < cl < 1:
        raise InputError(f"--cl: must lie between 0 and 1, got {cl}")
    return InferenceOptions(
        backend=params["backend"],
        optimizer=params["optimizer"],
        tolerance=params.get("tolerance"),
        maxiter=params.get("maxiter"),
        fit_timeout=params.get("fit_timeout", 900.0),
        poi_value=params["poi_value"],
        test_stat=params["test_stat"],
        modifier_settings=settings,
        measurement=params.get("measurement"),
        init_pars={
            k: _number_or_list(v, "--init")
            for k, v in _pairs(params.get("init_pars") or (), "--init").items()
        },
        fixed_params={
            k: _number_or_list(v, "--fix")
            for k, v in _pairs(params.get("fixed") or (), "--fix").items()
        },
        par_bounds={
            k: _numbers(v, "--bounds")
            for k, v in _pairs(params.get("bounds") or (), "--bounds").items()
        },
        level=round(1.0 - cl, 12),
        ul_scan=ul_scan,
        retry_strategy=params.get("retry_strategy") or DEFAULTS["retry_strategy"],
        fast=params.get("fast"),
        lockstep=bool(params.get("lockstep")),
        calctype=params.get("calctype") or DEFAULTS["calctype"],
        ntoys=params.get("ntoys") or DEFAULTS["ntoys"],
        seed=params.get("seed") or DEFAULTS["seed"],
        cls_accuracy=params.get("cls_accuracy"),
        max_toys=params.get("max_toys") or DEFAULTS["max_toys"],
        toy_block_size=params.get("toy_block_size") or DEFAULTS["toy_block_size"],
    )
