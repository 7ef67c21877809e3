"""jax for the compiled path: configured once per process (the CPU unless a GPU is asked for,
64-bit floats, the compilation cache on disk), and programs kept on disk as serialized
``jax.export`` modules, so that a worker loads what another traced and lowered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from fitaas.caches import write_once

__all__ = [
    "configure_jax",
    "exported",
    "exports_folder",
]


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


def exports_folder() -> Path | None:
    """Where :func:`exported` keeps programs (and :mod:`fitaas.fast.structures` what it
    traced): beside jax's compilation cache (``None``: off)."""
    import jax

    folder = getattr(jax.config, "jax_compilation_cache_dir", None)
    return Path(folder) / "exported" if folder else None


def exported(name: str, make: Callable[[], Any], example: tuple[Any, ...]) -> Any:
    """``make()`` (a jitted function, made only when its program is not on disk yet) compiled
    for ``example``'s shapes, its program kept on disk as ``name``.

    jax's compilation cache keeps compiled code, but every process still traces and
    lowers the function to find it, and for a Hessian over pyhf's template that is most of
    the cost (1Lbb: 0.3-0.5 s per structure and worker, against ~0.1 s to load it). The
    program is kept as a serialized ``jax.export`` module beside the compilation cache,
    by the structure's digest, jax's version and the platform; a module that cannot be
    read is made again. Off where the compilation cache is.
    """
    import jax
    from jax import export

    folder = exports_folder()
    if folder is None:
        return make().lower(*example).compile()
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
        found = export.export(make())(*example)
        with suppress(OSError, ImportError):  # (ImportError: jax without flatbuffers)
            write_once(path, bytes(found.serialize()))
    return jax.jit(found.call).lower(*example).compile()
