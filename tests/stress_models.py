"""Generated likelihoods that are hard to minimise: ill-scaled ones and ones with several minima.

Shared by the tests and by ``benchmarks/diagnostics.py`` (which puts this folder on its path).

- :func:`ill_scaled_workspace`: shapesys gammas whose constraint widths run from ~1e-6 to ~5
  (an uncertainty of 0.001 on a yield of hundreds, a large one on a yield near 0), free
  normalisation factors whose best values lie far from their start of 1 (a steep start),
  normsys and histosys modifiers: a published three-lepton search's features, generated.
- :func:`kink_workspace`: two channels, one histosys shared by three samples per channel whose
  per-bin variations lie on either side of nominal (one sample with both below nominal in a
  bin), run with ROOT's codes (``KINK_SETTINGS``): -2lnL has a kink at alpha = 0 and often a
  minimum on each side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["KINK_SETTINGS", "best_minimum", "ill_scaled_workspace", "kink_workspace"]

# ROOT's interpolation codes (HistFactory's defaults), which have a kink at alpha = 0.
KINK_SETTINGS = {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}


def _measurement(poi: str, parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": "m", "config": {"poi": poi, "parameters": parameters}}]


def ill_scaled_workspace(seed: int, bins: int = 4) -> dict[str, Any]:
    """An ill-scaled workspace (see the module's text), different for every ``seed``."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(2.0, 15.0, bins)
    main = rng.uniform(150.0, 600.0, bins)
    minor = rng.uniform(5.0, 40.0, bins)
    tiny = rng.uniform(0.02, 0.3, bins)
    k_main, k_minor = rng.uniform(2.0, 4.0), rng.uniform(0.2, 0.5)
    # shapesys widths (uncertainty / yield): tiny on the main background, large on the tiny one
    widths = {
        "main": np.exp(rng.uniform(np.log(2e-6), np.log(1e-4), bins)),
        "minor": np.exp(rng.uniform(np.log(1e-3), np.log(0.3), bins)),
        "tiny": np.exp(rng.uniform(np.log(1.0), np.log(5.0), bins)),
        "signal": np.exp(rng.uniform(np.log(1e-4), np.log(0.05), bins)),
    }
    yields = {"signal": signal, "main": main, "minor": minor, "tiny": tiny}
    systematics = [f"sys_{i}" for i in range(6)]
    samples = []
    for name, nominal in yields.items():
        modifiers: list[dict[str, Any]] = [
            {
                "name": f"shape_{name}",
                "type": "shapesys",
                "data": (nominal * widths[name]).tolist(),
            }
        ]
        if name == "signal":
            modifiers.append({"name": "mu", "type": "normfactor", "data": None})
        elif name in ("main", "minor"):
            modifiers.append({"name": f"k_{name}", "type": "normfactor", "data": None})
        for sys_name in systematics:
            if rng.uniform() < 0.7:
                up, down = rng.uniform(1.01, 1.15), rng.uniform(0.85, 0.99)
                modifiers.append(
                    {"name": sys_name, "type": "normsys", "data": {"hi": up, "lo": down}}
                )
            if rng.uniform() < 0.5:
                hi = nominal * rng.uniform(1.0, 1.1, bins)
                lo = nominal * rng.uniform(0.9, 1.0, bins)
                modifiers.append(
                    {
                        "name": f"{sys_name}_shape",
                        "type": "histosys",
                        "data": {"hi_data": hi.tolist(), "lo_data": lo.tolist()},
                    }
                )
        samples.append({"name": name, "data": nominal.tolist(), "modifiers": modifiers})
    expected = 0.4 * signal + k_main * main + k_minor * minor + tiny
    observed = rng.poisson(expected).astype(float)
    parameters = [
        {"name": "k_main", "bounds": [[0.0, 20.0]], "inits": [1.0]},
        {"name": "k_minor", "bounds": [[0.0, 20.0]], "inits": [1.0]},
        {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]},
    ]
    return {
        "channels": [{"name": "SR", "samples": samples}],
        "observations": [{"name": "SR", "data": observed.tolist()}],
        "measurements": _measurement("mu", parameters),
        "version": "1.0.0",
    }


def kink_workspace(seed: int) -> dict[str, Any]:
    """A two-channel workspace with one histosys shared by three samples (see the module's
    text); with ``KINK_SETTINGS`` many have a minimum on each side of alpha = 0."""
    rng = np.random.default_rng(seed)
    channels, observations = [], []
    for c in range(2):
        bins = 2
        signal = rng.uniform(3.0, 12.0, bins)
        background = rng.uniform(20.0, 60.0, bins)
        other = rng.uniform(5.0, 20.0, bins)
        samples = []
        for name, nominal in (("signal", signal), ("background", background), ("other", other)):
            # per bin, each variation on either side of nominal
            hi = nominal * (1.0 + rng.choice([-1.0, 1.0], bins) * rng.uniform(0.05, 0.25, bins))
            lo = nominal * (1.0 + rng.choice([-1.0, 1.0], bins) * rng.uniform(0.05, 0.25, bins))
            if name == "other":  # both below nominal in the first bin
                hi[0], lo[0] = nominal[0] * 0.8, nominal[0] * 0.85
            modifiers: list[dict[str, Any]] = [
                {
                    "name": "shared",
                    "type": "histosys",
                    "data": {"hi_data": hi.tolist(), "lo_data": lo.tolist()},
                },
                {
                    "name": f"norm_{name}",
                    "type": "normsys",
                    "data": {
                        "hi": float(rng.uniform(1.03, 1.2)),
                        "lo": float(rng.uniform(0.8, 0.97)),
                    },
                },
            ]
            if name == "signal":
                modifiers.append({"name": "mu", "type": "normfactor", "data": None})
            samples.append({"name": name, "data": nominal.tolist(), "modifiers": modifiers})
        expected = background * rng.uniform(0.7, 1.4, bins) + other + 0.5 * signal
        channels.append({"name": f"SR{c}", "samples": samples})
        observations.append(
            {"name": f"SR{c}", "data": rng.poisson(expected).astype(float).tolist()}
        )
    parameters = [{"name": "mu", "bounds": [[-5.0, 10.0]], "inits": [1.0]}]
    return {
        "channels": channels,
        "observations": observations,
        "measurements": _measurement("mu", parameters),
        "version": "1.0.0",
    }


def best_minimum(
    model: Any,
    data: Any,
    fixed: dict[int, float] | None = None,
    starts: int = 24,
    seed: int = 7,
) -> tuple[float, np.ndarray]:
    """The lowest -2lnL that pyhf's own fits (numpy, SLSQP at tolerance 1e-12) reach from
    pyhf's start and ``starts`` random starts (constrained parameters within 2 widths of
    nominal, free ones within their bounds' first decade), with ``fixed`` parameters held.

    Returns:
        The lowest -2lnL and its parameters.
    """
    import pyhf

    rng = np.random.default_rng(seed)
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    held = list(model.config.suggested_fixed())
    for index in fixed or {}:
        held[index] = True
    widths = np.ones(len(init))
    free = np.ones(len(init), dtype=bool)
    for name in model.config.par_order:
        paramset = model.config.param_set(name)
        if getattr(paramset, "constrained", False):
            widths[model.config.par_slice(name)] = paramset.width()
            free[model.config.par_slice(name)] = False
    best: tuple[float, np.ndarray] = (np.inf, init)
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        for attempt in range(starts + 1):
            start = init.copy()
            if attempt:
                start = start + rng.uniform(-2.0, 2.0, len(init)) * widths
                high = np.minimum(bounds[:, 1], np.maximum(10.0 * np.abs(init), 1.0))
                start = np.where(free, rng.uniform(bounds[:, 0], high), start)
                start = np.clip(start, bounds[:, 0] + 1e-6, bounds[:, 1] - 1e-6)
            for index, value in (fixed or {}).items():
                start[index] = value
            try:
                pars, value = pyhf.infer.mle.fit(
                    data,
                    model,
                    init_pars=start.tolist(),
                    par_bounds=bounds.tolist(),
                    fixed_params=held,
                    return_fitted_val=True,
                )
            except pyhf.exceptions.FailedMinimization:
                continue
            if float(value) < best[0]:
                best = (float(value), np.asarray(pars, dtype=float))
    finally:
        pyhf.set_backend(*previous)
    return best
