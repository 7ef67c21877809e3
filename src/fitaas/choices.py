"""The names users choose among (task kinds, backends, optimizers, test statistics, engines,
how combined points match) and the inference options' defaults.

Kept apart from the inference code so that the command line can offer them without
importing pyhf; :class:`fitaas.inference.InferenceOptions` takes its defaults from here, and
the engines' and test statistics' registries are tested against these names.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "BACKENDS",
    "CALCTYPES",
    "DEFAULTS",
    "DEVICES",
    "ENGINES",
    "KINDS",
    "MATCHES",
    "OPTIMIZERS",
    "RETRY_STRATEGIES",
    "TEST_STATS",
    "Kind",
]

Kind = Literal["hypotest", "upper_limit", "fit"]
KINDS: tuple[Kind, ...] = ("hypotest", "upper_limit", "fit")
BACKENDS = ("numpy", "jax")
OPTIMIZERS = ("scipy", "minuit")
TEST_STATS = ("qtilde", "q", "q0")
CALCTYPES = ("asymptotics", "toybased")
RETRY_STRATEGIES = ("default", "thorough", "strict", "none")
DEVICES = ("cpu", "gpu")
ENGINES = ("local", "parsl", "dask", "globus")
MATCHES = ("names", "values")

#: The defaults of the inference options the command line shows.
DEFAULTS: dict[str, Any] = {
    "backend": "numpy",
    "optimizer": "scipy",
    "poi_value": 1.0,
    "test_stat": "qtilde",
    "level": 0.05,
    "retry_strategy": "default",
    "calctype": "asymptotics",
    "ntoys": 1000,
    "seed": 0,
    "max_toys": 100_000,
    "toy_block_size": 250,
    "fit_timeout": 900.0,
}
