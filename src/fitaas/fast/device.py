"""Which device jax computes on: the CPU, unless a GPU is asked for.

A worker whose jax can see a GPU (a GPU node, jax's CUDA plugin installed) would otherwise
put every fit there and pre-allocate 75% of the card per process (measured: 4 workers took
all 143 GB of an H200, with out-of-memory errors, slower than the CPU). Per-point fits are
tiny: they stay on the CPU unless ``FITAAS_DEVICE=gpu``, and no process pre-allocates GPU
memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless set).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from contextlib import suppress

__all__ = ["configure_device", "device_report", "requested_device", "use_gpu"]


def requested_device(environ: MutableMapping[str, str] | None = None) -> str:
    """``"gpu"`` when ``FITAAS_DEVICE`` asks for it, else ``"cpu"``."""
    environ = os.environ if environ is None else environ
    return "gpu" if environ.get("FITAAS_DEVICE", "").strip().lower() == "gpu" else "cpu"


def use_gpu(environ: MutableMapping[str, str] | None = None) -> None:
    """Workers started from now on by this process compute on the GPU (``FITAAS_DEVICE``
    in the environment they inherit): ``--device gpu``, ``device = "gpu"``.

    Args:
        environ: The environment to set (default: this process's).
    """
    environ = os.environ if environ is None else environ
    environ["FITAAS_DEVICE"] = "gpu"
    if environ.get("JAX_PLATFORMS") == "cpu":  # (pinned by an earlier CPU configuration)
        del environ["JAX_PLATFORMS"]


def configure_device(environ: MutableMapping[str, str] | None = None) -> None:
    """Set jax's platform and memory settings for this process, before jax starts a backend.

    Args:
        environ: The environment to set (default: this process's).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if requested_device(environ) == "cpu":
        environ["JAX_PLATFORMS"] = "cpu"
    jax = sys.modules.get("jax")
    if jax is not None and environ is os.environ:  # imported already: its config too
        with suppress(Exception):  # a backend already started keeps its platform
            jax.config.update("jax_platforms", environ.get("JAX_PLATFORMS") or None)


def device_report() -> dict[str, str]:
    """What this process's jax computes on, and the settings that decided it.

    Starts jax's backend (on the CPU unless a GPU was asked for): for a worker's check.
    """
    configure_device()
    import jax

    return {
        "FITAAS_DEVICE": os.environ.get("FITAAS_DEVICE", ""),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", ""),
        "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", ""),
        "platform": str(jax.devices()[0].platform),
    }
