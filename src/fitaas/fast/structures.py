"""One compiled objective per model structure, the arrays that differ passed as arguments.

pyhf's jax backend compiles its objective for every new ``Model`` object (seconds per
signal point). Points of one analysis share their structure: only a few of the model's
internal arrays (nominal rates, interpolation tensors, masks, constraint widths) differ.
A :class:`Structure` builds one *template* model, finds by tracing (pyhf's jax backend)
which of its arrays the likelihood reads, and compiles -2lnL and its gradient once with those arrays
as arguments. Any model of the same structure (built with pyhf's numpy backend, as
plain pyhf builds it) is then evaluated by handing its own arrays to the compiled code.

Every model is checked before use: the compiled -2lnL must equal pyhf's own (numpy)
-2lnL of that model at two parameter points, or the model is not served (the caller
falls back to plain pyhf). pyhf does the statistics; this only evaluates its likelihood
faster.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
from scipy.special import gammaln

from fitaas.caches import write_once

__all__ = [
    "Bound",
    "HeldFit",
    "Structure",
    "StructureCache",
    "configure_jax",
    "constrained_parameters",
    "constraint_widths",
    "evaluation_noise",
    "fixed_key",
    "held_key",
    "parameter_scales",
]

LeafPath = tuple[tuple[bool, Any], ...]
Objective = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]

# The compiled -2lnL may differ from pyhf's by summation order only.
GUARD_RTOL = 1e-10
GUARD_ATOL = 1e-8
# Its gradient's projection on a step of 1e-4 constraint widths, against pyhf's -2lnL's
# finite differences along it (measured on the shared pallets: below 3e-7 of |grad|·|step|;
# a derivative of the wrong sign at a kink: above 0.1).
GUARD_STEP = 1e-4
GUARD_GRAD_RTOL = 1e-5
# The rounding of an evaluation, in units of the magnitude of its terms (see _magnitude): a
# Poisson constraint with aux count 2.5e11 (a shapesys gamma of width 2e-6) has terms of 6e12
# that cancel to O(1), and pyhf's numpy and jax -2lnL differ by ~2e-3 there; both are right
# within their rounding.
GUARD_NOISE = 8 * float(np.finfo(float).eps)
MAX_STRUCTURES = 16
# Columns of the Hessian per compiled call of Hessian-vector products (see
# Structure._blocked_hessian).
HESSIAN_BLOCK = 32


def _walk(obj: Any, path: LeafPath, seen: set[int], out: list[LeafPath]) -> None:
    """Paths to every float or bool array reachable from a pyhf model object."""
    import jax

    if isinstance(obj, jax.Array | np.ndarray):
        if obj.dtype.kind in "fb":
            out.append(path)
        return
    if id(obj) in seen:
        return
    if isinstance(obj, dict):
        seen.add(id(obj))
        for key in sorted(obj, key=str):
            _walk(obj[key], (*path, (False, key)), seen, out)
    elif isinstance(obj, list):
        seen.add(id(obj))
        for index, value in enumerate(obj):
            _walk(value, (*path, (False, index)), seen, out)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("pyhf"):
        seen.add(id(obj))
        attributes = vars(obj)
        for key in sorted(attributes):
            _walk(attributes[key], (*path, (True, key)), seen, out)


def _get(obj: Any, path: LeafPath) -> Any:
    for attribute, key in path:
        obj = getattr(obj, key) if attribute else obj[key]
    return obj


def _put(obj: Any, path: LeafPath, value: Any) -> None:
    *head, (attribute, key) = path
    parent = _get(obj, tuple(head))
    if attribute:
        setattr(parent, key, value)
    else:
        parent[key] = value


def configure_jax() -> None:
    """Run small computations synchronously, and keep compiled code on disk.

    A value and gradient of -2lnL takes ~0.1 ms of compute: handing it to jax's dispatch
    thread and waiting for the answer costs as much again (sbottom A, one call: 0.27 ms
    asynchronous, 0.165 ms synchronous). Workers compiling the same structure, and later
    runs, load compiled code from ``FITAAS_JAX_CACHE`` (default ``FITAAS_CACHE``/jax;
    empty: off) instead of compiling again.
    """
    from fitaas.caches import cache_folder
    from fitaas.fast.device import configure_device

    configure_device()
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    folder = os.environ.get("FITAAS_JAX_CACHE", str(cache_folder("jax")))
    if not folder or getattr(jax.config, "jax_compilation_cache_dir", None):
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _exports_folder() -> Path | None:
    """Where :func:`_exported` keeps programs: beside jax's compilation cache (``None``: off)."""
    import jax

    folder = getattr(jax.config, "jax_compilation_cache_dir", None)
    return Path(folder) / "exported" if folder else None


def _exported(name: str, jitted: Any, example: tuple[Any, ...]) -> Any:
    """``jitted`` compiled for ``example``'s shapes, its program kept on disk as ``name``.

    jax's compilation cache keeps compiled code, but every process still traces and
    lowers the function to find it, and for a Hessian over pyhf's template that is most of
    the cost (1Lbb: 0.3-0.5 s per structure and worker, against ~0.1 s to load it). The
    program is kept as a serialized ``jax.export`` module beside the compilation cache,
    by the structure's digest, jax's version and the platform; a module that cannot be
    read is made again. Off where the compilation cache is.
    """
    import jax
    from jax import export

    folder = _exports_folder()
    if folder is None:
        return jitted.lower(*example).compile()
    path = folder / f"{name}-{jax.__version__}-{jax.default_backend()}"
    found = None
    try:
        found = export.deserialize(bytearray(path.read_bytes()))
    except FileNotFoundError:
        pass
    except Exception:  # (damaged, or from a version that reads it no more: made again)
        with suppress(OSError):
            path.unlink()
    if found is None:
        found = export.export(jitted)(*example)
        with suppress(OSError, ImportError):  # (ImportError: jax without flatbuffers)
            write_once(path, bytes(found.serialize()))
    return jax.jit(found.call).lower(*example).compile()


def constraint_widths(pdf: Any) -> np.ndarray:
    """Each parameter's constraint width, from pyhf (NaN: unconstrained, or a width pyhf
    cannot give)."""
    widths = np.full(pdf.config.npars, np.nan)
    for name in pdf.config.par_order:
        paramset = pdf.config.param_set(name)
        if not _constrained(paramset):
            continue
        try:
            width = np.asarray(paramset.width(), dtype=float)
        except (AttributeError, RuntimeError):
            continue
        if np.all(np.isfinite(width)) and np.all(width > 0):
            widths[pdf.config.par_slice(name)] = width
    return widths


def parameter_scales(pdf: Any) -> np.ndarray:
    """Each parameter's constraint width (at most 1; 1 when unconstrained), from pyhf.

    SLSQP starts from the identity as its Hessian estimate; a staterror gamma of width
    0.02 has a curvature 2500 times a unit nuisance parameter's, and learning that costs
    iterations. Minimising over ``(x - start) / scale`` instead removes most of the
    spread (measured: 53 -> 27 evaluations per fit on sbottom A, 89 -> 43 on 1Lbb, ending
    nearer the minimum), at the same minimum.
    """
    widths = constraint_widths(pdf)
    return np.where(np.isnan(widths), 1.0, np.minimum(widths, 1.0))


def _constrained(paramset: Any) -> bool:
    return bool(getattr(paramset, "constrained", False))


def constrained_parameters(pdf: Any) -> np.ndarray:
    """Which parameters have a constraint term (a mask in pyhf's parameter order)."""
    mask = np.zeros(pdf.config.npars, dtype=bool)
    for name in pdf.config.par_order:
        mask[pdf.config.par_slice(name)] = _constrained(pdf.config.param_set(name))
    return mask


def evaluation_noise(model: Any, pars: Any, data: Any) -> float:
    """How much rounding an evaluation of -2lnL at ``pars`` carries: ``GUARD_NOISE`` times
    the sum of the absolute values of its Poisson terms (main and auxiliary), the numbers
    whose cancellation leaves the result (~2e-3 where a shapesys gamma's width is 2e-6;
    ~1e-11 on a typical published likelihood)."""
    rates = np.asarray(model.expected_data(np.asarray(pars, dtype=float)), dtype=float)
    counts = np.asarray(data, dtype=float)
    positive = (rates > 0) & (counts >= 0)
    n, lam = counts[positive], rates[positive]
    return GUARD_NOISE * float(2 * np.sum(n * np.abs(np.log(lam)) + lam + gammaln(n + 1)))


def _guard(
    model: Any, compiled: Callable[[np.ndarray, np.ndarray], Any], scales: np.ndarray
) -> bool:
    """Whether the compiled -2lnL and its gradient are pyhf's for this very model.

    The values must equal pyhf's own (numpy) -2lnL at the start of every fit (pyhf's
    suggested initial values) and at a point off it; the gradient's projection on a
    direction must equal pyhf's -2lnL's slope along it, taken by finite differences of
    second order: one-sided towards lower values at the start (where normsys and histosys
    interpolations with a kink at 0 have theirs, and where a derivative that is not one of
    the function's pushed fits the wrong way), central at the other point.
    """
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    # (off the start by a tenth of each parameter's width: a gamma of width 1e-6 moved by 0.1
    # would put -2lnL at 1e9, where rounding alone is larger than the slope's tolerance)
    shifted = np.clip(
        init + 0.1 * scales * np.cos(np.arange(len(init))), bounds[:, 0], bounds[:, 1]
    )

    def nll(pars: np.ndarray, data: np.ndarray) -> float:
        return float(pyhf.infer.mle.twice_nll(pars, data, model)[0])

    step = GUARD_STEP * scales * (0.5 + np.random.default_rng(0).random(len(init)))
    # (each point with the other's expected data: at its own, the gradient of the main
    # term vanishes whatever the rates' derivatives are)
    for pars, other, one_sided in ((init, shifted, True), (shifted, init, False)):
        data = np.asarray(model.expected_data(other), dtype=float)
        value, grad = compiled(pars, data)
        expected = nll(pars, data)
        noise = evaluation_noise(model, pars, data)
        if not abs(float(value) - expected) <= GUARD_ATOL + GUARD_RTOL * abs(expected) + noise:
            return False
        direction = np.where(pars - 2 * step >= bounds[:, 0], step, 0.0)
        if one_sided:  # second order: (3 f(x) - 4 f(x-h) + f(x-2h)) / 2h
            slope = (
                1.5 * expected
                - 2 * nll(pars - direction, data)
                + 0.5 * nll(pars - 2 * direction, data)
            )
        else:
            slope = 0.5 * (nll(pars + direction, data) - nll(pars - direction, data))
        projected = float(np.asarray(grad) @ direction)
        tolerance = GUARD_ATOL + GUARD_GRAD_RTOL * float(np.abs(grad) @ direction) + 4 * noise
        if not abs(slope - projected) <= tolerance:
            return False
    return True


@contextmanager
def _traced_under_jax() -> Iterator[Callable[[], None]]:
    """Within: pyhf's numpy backend, and a switch to its jax backend for tracing.

    The template is a numpy model, traced under pyhf's jax backend: built under jax, its
    construction would run op by op in jax, each op compiled on its own (~1 s). pyhf
    recomputes every live model's index tables when its backend changes (its
    "tensorlib_changed" event), op by op again; the models alive now, the template
    included, are numpy models that stay so, and pyhf's own switch turns the event off for
    the visit. The backend and the event are restored on leaving.
    """
    previous = pyhf.get_backend()
    muted = "tensorlib_changed" in getattr(pyhf.events, "__disabled_events", set())
    patched: list[Any] = []

    def to_jax() -> None:
        pyhf.events.disable("tensorlib_changed")
        pyhf.set_backend("jax", precision="64b")
        backend = type(pyhf.get_backend()[0])
        if not patched:
            patched.append((backend, backend.abs))
            backend.abs = staticmethod(_left_abs)

    try:
        pyhf.set_backend("numpy", precision="64b")
        yield to_jax
    finally:
        for backend, original in patched:
            backend.abs = original
        pyhf.set_backend(*previous)
        if not muted:
            pyhf.events.enable("tensorlib_changed")


def _left_abs(tensor: Any) -> Any:
    """``|x|`` whose derivative at 0 is -1: the left derivative, as pyhf's branches pick.

    pyhf's interpolations with a kink at 0 pick their ``α <= 0`` branch at 0 (code0:
    ``where(α > 0, up, down)``; code1: ``where(α > 0, up, down) ** |α|``). jax's own
    ``|x|`` has derivative +1 at 0, which makes code1's derivative at α = 0 the down
    branch's with the wrong sign (ln(down) instead of -ln(down)): a fit started at the
    nominal point (where pyhf starts every normsys) is pushed the wrong way or stops there.
    With this ``|x|`` every derivative at a kink is the left one, and the gradient is the
    derivative of one branch, as a gradient method needs.
    """
    return _abs_with_left_derivative()(tensor)


@cache
def _abs_with_left_derivative() -> Any:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def left_abs(x: Any) -> Any:
        return jnp.abs(x)

    @left_abs.defjvp
    def _jvp(primals: Any, tangents: Any) -> Any:
        (x,), (dx,) = primals, tangents
        return jnp.abs(x), jnp.where(x > 0, 1.0, -1.0).astype(dx.dtype) * dx

    return left_abs


class Structure:
    """-2lnL and its gradient, compiled once for every model with this structure.

    Args:
        model: A model (numpy backend) whose structure this is; a template built from its
            specification is traced under pyhf's jax backend.
        modifier_settings: The interpolation codes the models are built with.
    """

    def __init__(self, model: Any, modifier_settings: dict[str, Any] | None = None) -> None:
        import jax

        configure_jax()
        # Example inputs for tracing, computed by the given (numpy) model.
        init = np.asarray(model.config.suggested_init(), dtype=float)
        data = np.asarray(model.expected_data(init), dtype=float)
        kwargs: dict[str, Any] = {"validate": False, "poi_name": model.config.poi_name}
        if modifier_settings:
            kwargs["modifier_settings"] = modifier_settings
        with _traced_under_jax() as to_jax:
            template = pyhf.Model(model.spec, **kwargs)
            to_jax()
            candidates: list[LeafPath] = []
            _walk(template, (), set(), candidates)

            def every(pars: Any, data: Any, arrays: Sequence[Any]) -> Any:
                return self._twice_nll(template, candidates, pars, data, arrays)

            values = [_get(template, p) for p in candidates]
            jaxpr = jax.make_jaxpr(every)(init, data, values).jaxpr
            read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
            read |= {id(v) for v in jaxpr.outvars}
            inputs = jaxpr.invars[2:]
            self.paths = [p for p, v in zip(candidates, inputs, strict=True) if id(v) in read]
            paths = self.paths

            def used(pars: Any, data: Any, arrays: Sequence[Any]) -> Any:
                return self._twice_nll(template, paths, pars, data, arrays)

            arrays = [np.asarray(_get(template, p)) for p in paths]
            self.shapes = [(a.shape, a.dtype) for a in arrays]
            self.npars = len(init)
            self.ndata = len(data)
            self._function = used
            self._example = (init, data, arrays)
            self._variants: dict[tuple[str, int, tuple[bool, ...]], Any] = {}
            lowered = jax.jit(jax.value_and_grad(used)).lower(init, data, arrays)
            # what this structure computes, for the programs kept on disk (_exported)
            self.digest = hashlib.sha256(lowered.as_text().encode()).hexdigest()[:32]
            self._value_and_grad = lowered.compile()

    def batched_value_and_grad(self, size: int) -> Any:
        """-2lnL and its gradient for ``size`` (parameters, data) pairs at once (``vmap``).

        Compiled once per size and kept: ``f(pars[size, npars], data[size, ndata], arrays)``
        gives ``(values[size], gradients[size, npars])``.
        """
        return self._variant("value_and_grad", size)

    def batched_value(self, size: int) -> Any:
        """-2lnL at ``size`` parameter points on one dataset: ``f(pars[size, npars], data,
        arrays)`` gives ``values[size]``; compiled once per size and kept."""
        return self._variant("value", size)

    def hessian(self) -> Any:
        """The Hessian of -2lnL, ``h(pars, data, arrays)``, compiled on first use."""
        return self._variant("hessian", 0)

    def stacked_value_and_grad(self, size: int, varying: tuple[bool, ...]) -> Any:
        """-2lnL and its gradient of ``size`` models of this structure at once (``vmap``).

        ``f(pars[size, npars], data[size, ndata], arrays)`` where the arrays marked in
        ``varying`` carry one row per model (``[size, ...]``) and the others are shared;
        compiled once per size and pattern and kept.
        """
        return self._variant("stacked", size, varying)

    def _variant(self, name: str, size: int, varying: tuple[bool, ...] = ()) -> Any:
        found = self._variants.get((name, size, varying))
        if found is not None:
            return found
        import jax

        init, data, arrays = self._example
        with _traced_under_jax() as to_jax:
            to_jax()
            if name == "stacked":
                axes = [0 if v else None for v in varying]
                stacked = jax.vmap(jax.value_and_grad(self._function), in_axes=(0, 0, axes))
                per_model = [
                    np.stack([a] * size) if v else a for a, v in zip(arrays, varying, strict=True)
                ]
                pars, data_rows = np.tile(init, (size, 1)), np.tile(data, (size, 1))
                made = jax.jit(stacked).lower(pars, data_rows, per_model).compile()
            elif name == "hessian":
                made = self._blocked_hessian(jax, init, data, arrays)
            elif name == "value":
                points = jax.vmap(self._function, in_axes=(0, None, None))
                made = jax.jit(points).lower(np.tile(init, (size, 1)), data, arrays).compile()
            else:
                batched = jax.vmap(jax.value_and_grad(self._function), in_axes=(0, 0, None))
                pars, rows = np.tile(init, (size, 1)), np.tile(data, (size, 1))
                made = jax.jit(batched).lower(pars, rows, arrays).compile()
        self._variants[name, size, varying] = made
        return made

    def _blocked_hessian(self, jax: Any, init: Any, data: Any, arrays: Any) -> Any:
        """The Hessian as Hessian-vector products, ``HESSIAN_BLOCK`` columns per call.

        ``jax.hessian`` pushes every column through the gradient at once; on the CPU its
        intermediate arrays outgrow the caches, and blocks of 32 columns are ~3x faster
        (1Lbb, 126 parameters: 26 ms against 80 ms), to the same numbers.
        """
        gradient = jax.grad(self._function)

        def columns(pars: Any, rows: Any, arrays: Any, seeds: Any) -> Any:
            def product(seed: Any) -> Any:
                return jax.jvp(lambda p: gradient(p, rows, arrays), (pars,), (seed,))[1]

            return jax.vmap(product)(seeds)

        size = min(self.npars, HESSIAN_BLOCK)
        seeds = np.zeros((size, self.npars))
        compiled = _exported(
            f"hessian{size}-{self.digest}", jax.jit(columns), (init, data, arrays, seeds)
        )
        identity = np.eye(self.npars)
        blocks = [identity[i : i + size] for i in range(0, self.npars, size)]
        blocks = [np.vstack([b, np.zeros((size - len(b), self.npars))]) for b in blocks]

        def hessian(pars: Any, rows: Any, arrays: Any) -> np.ndarray:
            found = [np.asarray(compiled(pars, rows, arrays, b), dtype=float) for b in blocks]
            return np.vstack(found)[: self.npars]

        return hessian

    @staticmethod
    def _twice_nll(
        template: Any, paths: Sequence[LeafPath], pars: Any, data: Any, arrays: Sequence[Any]
    ) -> Any:
        saved = [_get(template, p) for p in paths]
        try:
            for path, value in zip(paths, arrays, strict=True):
                _put(template, path, value)
            return -2.0 * template.logpdf(pars, data)[0]
        finally:
            for path, value in zip(paths, saved, strict=True):
                _put(template, path, value)

    def arrays(self, model: Any) -> list[np.ndarray] | None:
        """The model's own values of the arrays the likelihood reads (``None``: other shape)."""
        try:
            arrays = [np.asarray(_get(model, p)) for p in self.paths]
        except (AttributeError, KeyError, IndexError, TypeError):
            return None
        if [(a.shape, a.dtype) for a in arrays] != self.shapes:
            return None
        return arrays

    def bind(self, model: Any) -> Bound | None:
        """This structure with ``model``'s arrays, checked against pyhf's -2lnL (the guard).

        Returns:
            ``None`` if the model is not of this structure or fails the guard.
        """
        if model.config.npars != self.npars or model.config.nmaindata + model.config.nauxdata != (
            self.ndata
        ):
            return None
        found = self.arrays(model)
        if found is None:
            return None
        import jax

        arrays = jax.device_put(found)  # once per model, not once per call
        compiled_vg = self._value_and_grad
        last_data: list[Any] = [None, None]

        def value_and_grad(pars: np.ndarray, data: np.ndarray) -> tuple[float, np.ndarray]:
            if last_data[0] is not data:  # the fits of one minimisation share their data
                last_data[:] = [data, jax.device_put(data)]
            value, grad = compiled_vg(pars, last_data[1], arrays)
            return float(value), np.asarray(grad)

        scales = parameter_scales(model)
        if not _guard(model, lambda pars, data: compiled_vg(pars, data, arrays), scales):
            return None
        return Bound(self, arrays, value_and_grad, scales, constrained_parameters(model))


@dataclass(frozen=True)
class Bound:
    """A compiled structure with one model's arrays: what a model's fits evaluate.

    Attributes:
        structure: The structure.
        arrays: The model's own arrays (on jax's device).
        value_and_grad: -2lnL and its gradient of the model, ``f(pars, data)``.
        scales: Each parameter's constraint width (see :func:`parameter_scales`).
        constrained: Which parameters have a constraint term.
    """

    structure: Structure
    arrays: Any
    value_and_grad: Objective
    scales: np.ndarray
    constrained: np.ndarray


def fixed_key(fixed_vals: Any) -> tuple[tuple[int, float], ...]:
    """A fit's fixed ``(index, value)`` pairs, sorted, as plain numbers (a key part)."""
    return tuple(sorted((int(i), float(v)) for i, v in fixed_vals or []))


def held_key(data: Any, fixed_vals: Any, par_bounds: Any) -> tuple[bytes, tuple[Any, ...], bytes]:
    """What identifies a fit of a model for :meth:`StructureCache.hold`: its data, its fixed
    ``(index, value)`` pairs and its bounds."""
    return (
        np.asarray(data, dtype=float).tobytes(),
        fixed_key(fixed_vals),
        np.asarray(par_bounds, dtype=float).tobytes(),
    )


@dataclass(frozen=True)
class HeldFit:
    """A minimum found ahead of its request (:mod:`fitaas.inference.lockstep`).

    Attributes:
        x: The parameters at the minimum (fixed ones included).
        fun: -2lnL there.
        jac: Its gradient there.
        nfev: Evaluations the fit took.
        tolerance: The decrease of -2lnL still possible at the minimum, at most.
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nfev: int
    tolerance: float


class StructureCache:
    """The structures a worker has compiled, and the objective of the model in use."""

    def __init__(self) -> None:
        self._structures: dict[str, list[Structure]] = {}
        self._last: tuple[Any, Bound | None] = (None, None)
        self._memo: tuple[Any, dict[Any, Any]] = (None, {})
        self._anchors: tuple[Any, Any] = (None, None)
        self._held: dict[int, tuple[Any, Bound, dict[Any, HeldFit]]] = {}
        self.compiled = 0
        self.refused = 0

    def hold(
        self, model: Any, bound: Bound, key: tuple[bytes, tuple[Any, ...], bytes], fit: HeldFit
    ) -> None:
        """Keep a minimum of ``model``'s fit ``key`` (see :func:`held_key`) for its request,
        and the model's bound, until :meth:`release`."""
        _, _, fits = self._held.setdefault(id(model), (model, bound, {}))
        fits[key] = fit

    def held(
        self, model: Any, key: tuple[bytes, tuple[Any, ...], bytes], tolerance: float | None
    ) -> HeldFit | None:
        """The minimum held for ``model``'s fit ``key``, if any, and if as precise as a fit
        at ``tolerance`` (``None``: pyhf's default) would be."""
        found = self._held.get(id(model))
        fit = found[2].get(key) if found is not None and found[0] is model else None
        return (
            fit if fit is not None and (tolerance is None or fit.tolerance <= tolerance) else None
        )

    def release(self, model: Any) -> None:
        """Forget the minima held for ``model``."""
        self._held.pop(id(model), None)

    def anchors(self, model: Any, make: Callable[[], Any]) -> Any:
        """The anchors of ``model``'s fits (see :mod:`fitaas.fast.differences`), made by
        ``make`` for a new model and shared by every fit of it while it is in use, so that
        the values of all its fits (every strategy, every start) agree beyond rounding."""
        if self._anchors[0] is not model:
            self._anchors = (model, make())
        return self._anchors[1]

    def memo(self, model: Any) -> dict[Any, Any]:
        """The minima found for ``model`` by request (data, start, bounds, fixed values,
        strategy), kept while the same model object is in use: pyhf's hypothesis test makes
        three of its five fits anew for every POI value of an upper limit."""
        if self._memo[0] is not model:
            self._memo = (model, {})
        return self._memo[1]

    def objective(self, model: Any, modifier_settings: dict[str, Any] | None) -> Objective | None:
        """The compiled objective for ``model``, compiling its structure if new.

        Returns:
            ``(value, gradient)`` of -2lnL as a function of ``(pars, data)``, or ``None``
            when the model cannot be served (the caller uses plain pyhf).
        """
        bound = self.bound(model, modifier_settings)
        return bound.value_and_grad if bound is not None else None

    def bound(self, model: Any, modifier_settings: dict[str, Any] | None) -> Bound | None:
        """The compiled structure bound to ``model``, compiling the structure if new.

        Returns:
            ``None`` when the model cannot be served (the caller uses plain pyhf).
        """
        if self._last[0] is model:
            return self._last[1]
        held = self._held.get(id(model))
        if held is not None and held[0] is model:
            self._last = (model, held[1])
            return held[1]
        key = repr(sorted((modifier_settings or {}).items()))
        known = self._structures.setdefault(key, [])
        found = None
        for structure in known:
            found = structure.bind(model)
            if found is not None:
                break
        if found is None and sum(map(len, self._structures.values())) < MAX_STRUCTURES:
            made: Structure | None
            try:
                made = Structure(model, modifier_settings)
            except Exception:  # a model pyhf's jax backend cannot trace: plain pyhf
                made = None
            if made is not None:
                self.compiled += 1
                known.append(made)
                found = made.bind(model)
        if found is None:
            self.refused += 1
        self._last = (model, found)
        return found
