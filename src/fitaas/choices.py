"""The names users choose among: task kinds, backends, optimizers, test statistics.

Kept apart from the inference code so that the command line can offer them without
importing pyhf.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BACKENDS",
    "CALCTYPES",
    "DEVICES",
    "KINDS",
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
